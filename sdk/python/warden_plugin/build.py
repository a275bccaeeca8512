"""`python -m warden_plugin build [DIR]`: DIR/app.py into DIR/NAME.wasm,
with DIR/warden.toml embedded as its manifest.

componentize-py imports the app at build time (declaring its tools or role)
and snapshots the interpreter; the manifest then goes into a top-level
custom section named `warden:manifest`, which warden reads at load time.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

KIT = Path(__file__).resolve().parent
MANIFEST_SECTION = "warden:manifest"

# componentize-py snapshots the interpreter after importing the entry module:
# a module not imported by then cannot be imported when a call runs. So the
# entry imports the app, every binding of the world and the kit's own
# modules, then names the export class componentize-py looks for.
_PRELUDE = """import importlib, pkgutil
import wit_world.imports
for _m in pkgutil.iter_modules(wit_world.imports.__path__):
    importlib.import_module("wit_world.imports." + _m.name)
import warden_plugin._http_wasi
import {module}
"""

_ENTRY = {
    "tool": _PRELUDE
    + """from warden_plugin import _tools
if not _tools.names():
    raise SystemExit("{module}.py declares no tools: decorate functions with @warden_plugin.tool")
from warden_plugin._export_tool import Tool
""",
    "role": _PRELUDE
    + """from warden_plugin import _role
_role.declared()
from warden_plugin._export_role import Role
""",
}


class BuildError(Exception):
    pass


def manifest(project: Path) -> tuple[dict, bytes]:
    path = project / "warden.toml"
    try:
        text = path.read_bytes()
    except OSError as e:
        raise BuildError(f"cannot read {path}: {e.strerror} (a plugin project keeps its manifest in warden.toml)") from None
    try:
        parsed = tomllib.loads(text.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise BuildError(f"{path}: {e}") from None
    for key in ("name", "kind"):
        if not isinstance(parsed.get(key), str):
            raise BuildError(f"{path}: `{key}` is missing; `warden plugin check {project}` lists everything a manifest needs")
    if parsed["kind"] not in _ENTRY:
        raise BuildError(f"{path}: kind {parsed['kind']!r}: use \"tool\" or \"role\"")
    return parsed, text


def build(project: Path, module: str = "app", output: Path | None = None) -> Path:
    project = project.resolve()
    parsed, manifest_bytes = manifest(project)
    if not (project / f"{module}.py").is_file():
        raise BuildError(f"{project}: no {module}.py; the plugin's code goes there (or name its module with --module)")
    kind = parsed["kind"]
    try:
        import componentize_py  # noqa: F401 - only to say it is missing
    except ImportError:
        raise BuildError(
            f"componentize-py is not installed for {sys.executable}: `{sys.executable} -m pip install "
            "componentize-py==0.25.1` (the kit's requirement)"
        ) from None
    output = (output or project / f"{parsed['name']}.wasm").resolve()
    with tempfile.TemporaryDirectory(prefix="warden-build-") as tmp:
        tmp = Path(tmp)
        (tmp / "warden_entry.py").write_text(_ENTRY[kind].format(module=module))
        built = tmp / "component.wasm"
        command = [
            sys.executable,
            "-c",
            "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())",
            "-q",
            "-d",
            str(KIT / "wit"),
            "-w",
            f"warden:python-kit/{kind}",
            "componentize",
            "warden_entry",
            "-p",
            str(tmp),
            "-p",
            str(project),
            "-p",
            str(KIT.parent),
            "-o",
            str(built),
        ]
        env = dict(os.environ)
        # Bytecode files written into the project during the snapshot are
        # noise there.
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        # The Python error says what went wrong; componentize-py's own Rust
        # backtrace after it would only bury it.
        env["RUST_LIB_BACKTRACE"] = "0"
        done = subprocess.run(command, cwd=tmp, env=env)
        if done.returncode != 0:
            raise BuildError(
                "componentize-py failed: its message is above (an error your module raised when the build "
                "imported it, or a module it imports that is not pure Python or not installed for this interpreter)"
            )
        component = built.read_bytes() + custom_section(MANIFEST_SECTION, manifest_bytes)
        partial = output.with_suffix(".wasm.partial")
        partial.write_bytes(component)
        partial.replace(output)
    return output


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def custom_section(name: str, data: bytes) -> bytes:
    """A custom section (id 0) named `name` holding `data`."""
    payload = _leb128(len(name.encode())) + name.encode() + data
    return b"\x00" + _leb128(len(payload)) + payload


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warden_plugin", description="Build a warden plugin written in Python.")
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="DIR/app.py into DIR/NAME.wasm with DIR/warden.toml inside")
    b.add_argument("dir", nargs="?", default=".", type=Path)
    b.add_argument("--module", default="app", help="the module that declares the tools or role (default: app)")
    b.add_argument("-o", "--output", type=Path, help="where to write the component (default: DIR/NAME.wasm)")
    args = parser.parse_args(argv)
    try:
        out = build(args.dir, args.module, args.output)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0
