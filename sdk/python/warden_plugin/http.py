"""Outbound HTTP through `wasi:http/outgoing-handler`, so through the
operator's network policy: a host the operator did not grant raises
`Denied` (which, unhandled, is the tool's `denied` error).

One call is one request: redirects are returned, not followed, so a plugin
that follows one makes a new request the host checks again.
"""

import json as _json
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from . import _host
from .errors import Denied, Failed, InvalidArguments

#: The most of a response body read unless the caller asks otherwise.
DEFAULT_MAX_BODY = 10 * 1024 * 1024


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    #: The body was longer than `max_body` and was cut.
    truncated: bool = False

    def header(self, name: str) -> str | None:
        """The first header named `name` (case-insensitive)."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        return _json.loads(self.body)


def get(url: str, *, headers: dict | None = None, max_body: int = DEFAULT_MAX_BODY) -> Response:
    return request("GET", url, headers=headers, max_body=max_body)


def post(
    url: str,
    body: bytes | str | None = None,
    *,
    json=None,
    headers: dict | None = None,
    max_body: int = DEFAULT_MAX_BODY,
) -> Response:
    """POST `body`, or `json` encoded as JSON (with its content type)."""
    headers = dict(headers or {})
    if json is not None:
        body = _json.dumps(json)
        headers.setdefault("content-type", "application/json")
    return request("POST", url, headers=headers, body=body, max_body=max_body)


_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")


def request(
    method: str,
    url: str,
    *,
    headers: dict | None = None,
    body: bytes | str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
) -> Response:
    """Sends one request and reads the response, its body up to `max_body`
    bytes."""
    target = _Target.parse(url)
    method = method.upper()
    if method not in _METHODS:
        raise InvalidArguments(f"{url}: method {method!r}: use one of {', '.join(_METHODS)}")
    if isinstance(body, str):
        body = body.encode()
    _host.require("wasi_http_types", "HTTP")
    from . import _http_wasi

    status, got, data, truncated = _http_wasi.send(target, method, headers or {}, body, max(0, int(max_body)))
    return Response(status=status, headers=got, body=data, truncated=truncated)


@dataclass
class _Target:
    url: str
    scheme: str
    host: str
    port: int
    authority: str
    path: str

    @classmethod
    def parse(cls, url: str) -> "_Target":
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise InvalidArguments(f"{url!r}: {e}") from None
        if parts.scheme not in ("http", "https"):
            raise InvalidArguments(f"{url}: scheme {parts.scheme!r} is not supported; use http or https")
        if not parts.hostname:
            raise InvalidArguments(f"{url}: no host")
        default = 443 if parts.scheme == "https" else 80
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        authority = f"{shown}:{port}" if port else shown
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(url, parts.scheme, host, port or default, authority, path)

    def denied(self) -> Denied:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return Denied(
            f"{self.url}: refused by the operator's network policy; it needs a grant such as "
            f"--allow-host {self.scheme}://{host}:{self.port}"
        )

    def prohibited(self) -> Denied:
        return Denied(
            f"{self.url}: {self.host} resolves to a loopback, private, link-local or otherwise special "
            "address, which warden refuses unless the grant names that IP literally"
        )

    def failed(self, why: str) -> Failed:
        return Failed(f"{self.url}: {why}")
