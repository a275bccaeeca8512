"""HTTP for code `warden exec python` runs: `urllib.request.urlopen` over
`wasi:http`, so under the operator's network policy (`--allow-host`).

CPython's own urllib speaks through sockets, which a WASI sandbox does not
have; this replaces `urlopen` with one that makes each request (and each
redirect it follows) through the host, which checks it against the grant.
A refused host raises `urllib.error.URLError` whose reason names the grant
it needs; an HTTP error status raises `urllib.error.HTTPError`, as urllib
does.
"""

import http.client
import io
import urllib.error
import urllib.parse
import urllib.request

from warden_plugin import http as _http
from warden_plugin.errors import ToolError

#: Redirects followed before giving up, as urllib's default handler.
MAX_REDIRECTS = 10
_REDIRECTS = (301, 302, 303, 307, 308)


class Response(io.BytesIO):
    """What `urlopen` returns: the body as a file, with urllib's accessors."""

    def __init__(self, url: str, status: int, headers: list, body: bytes):
        super().__init__(body)
        self.url = url
        self.status = self.code = status
        self.reason = http.client.responses.get(status, "")
        self.headers = self.msg = http.client.HTTPMessage()
        for name, value in headers:
            self.headers[name] = value

    def getcode(self) -> int:
        return self.status

    def geturl(self) -> str:
        return self.url

    def info(self):
        return self.headers

    def getheader(self, name: str, default=None):
        return self.headers.get(name, default)

    def getheaders(self) -> list:
        return list(self.headers.items())


def urlopen(url, data=None, timeout=None, **_ignored):
    """`urllib.request.urlopen` through the host: `url` is a string or a
    `urllib.request.Request`; `data` makes it a POST."""
    request = url if isinstance(url, urllib.request.Request) else urllib.request.Request(url, data=data)
    if data is not None and isinstance(url, urllib.request.Request):
        request.data = data
    method = request.get_method()
    headers = dict(request.header_items())
    body = request.data
    if isinstance(body, str):
        raise TypeError("POST data should be bytes, an iterable of bytes, or a file object; it cannot be of type str")
    target = request.full_url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            answer = _http.request(method, target, headers=headers, body=body)
        except ToolError as e:
            raise urllib.error.URLError(e.message) from None
        location = answer.header("location")
        if answer.status in _REDIRECTS and location:
            target = urllib.parse.urljoin(target, location)
            if answer.status in (301, 302, 303) and method not in ("GET", "HEAD"):
                method, body = "GET", None
            continue
        response = Response(target, answer.status, answer.headers, answer.body)
        if answer.status >= 400:
            raise urllib.error.HTTPError(target, answer.status, response.reason, response.headers, response)
        return response
    raise urllib.error.URLError(f"{request.full_url}: more than {MAX_REDIRECTS} redirects")


def install() -> None:
    """Makes `urllib.request.urlopen` (and so code built on it) use the host."""
    urllib.request.urlopen = urlopen
