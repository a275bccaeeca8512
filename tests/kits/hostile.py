"""Tools that try what a hostile or buggy Python plugin would, added to a
project `warden plugin new --lang python` wrote (runtime/cli/tests/all/kits.rs)."""

import os

import warden_plugin as warden


@warden.tool
def read(path: str) -> str:
    """Reads a file."""
    with open(path) as f:
        return f.read()


@warden.tool
def write(path: str, text: str) -> int:
    """Writes a file."""
    with open(path, "w") as f:
        return f.write(text)


@warden.tool
def fetch(url: str, body: str | None = None) -> dict:
    """Fetches a URL without following redirects (a POST of `body` if given)."""
    r = warden.http.get(url) if body is None else warden.http.post(url, body)
    return {"status": r.status, "location": r.header("location"), "body": r.text()}


@warden.tool
def spin() -> None:
    """Never returns."""
    while True:
        pass


@warden.tool
def hog(mib: int) -> int:
    """Holds `mib` MiB at once."""
    blocks = [bytearray(1024 * 1024) for _ in range(mib)]
    return len(blocks)


@warden.tool
def environ() -> list[str]:
    """The environment variables the plugin sees."""
    return sorted(os.environ)


@warden.tool
def crash(how: str) -> object:
    """Fails the way it is told."""
    if how == "zero":
        return 1 / 0
    if how == "set":
        return {1, 2}
    if how == "exit":
        raise SystemExit(7)
    if how == "recurse":
        def down(n):
            return down(n + 1)
        return down(0)
    raise warden.Denied(f"refused {how}")
