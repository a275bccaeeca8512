"""The wasi:http side of `warden_plugin.http` (inside a component only)."""

from componentize_py_types import Err, Ok

# Imported here, at build time: a binding first imported during a call
# cannot be found.
from wit_world.imports import outgoing_handler, streams
from wit_world.imports import wasi_http_types as types

from .errors import InvalidArguments


def send(target, method, headers, body, max_body):
    """Sends the request; returns (status, headers, body, truncated)."""
    entries = [(str(k).lower(), str(v).encode()) for k, v in headers.items()]
    if body is not None and not any(k == "content-length" for k, _ in entries):
        # A length, not chunks: what most servers expect of a request body.
        entries.append(("content-length", str(len(body)).encode()))
    try:
        fields = types.Fields.from_list(entries)
    except Err as e:
        raise InvalidArguments(f"{target.url}: a header cannot be sent: {type(e.value).__name__}") from None
    request = types.OutgoingRequest(fields)
    methods = {
        "GET": types.Method_Get,
        "HEAD": types.Method_Head,
        "POST": types.Method_Post,
        "PUT": types.Method_Put,
        "DELETE": types.Method_Delete,
        "OPTIONS": types.Method_Options,
        "PATCH": types.Method_Patch,
    }
    scheme = types.Scheme_Https() if target.scheme == "https" else types.Scheme_Http()
    for what, setter, value in (
        ("method", request.set_method, methods[method]()),
        ("scheme", request.set_scheme, scheme),
        ("authority", request.set_authority, target.authority),
        ("path", request.set_path_with_query, target.path),
    ):
        try:
            setter(value)
        except Err:
            raise InvalidArguments(f"{target.url}: invalid {what}") from None
    # Each resource is dropped (`with`) before the one it came from: the
    # host refuses to drop a parent whose children live.
    outgoing = request.body() if body is not None else None
    try:
        pending = outgoing_handler.handle(request, None)
    except Err as e:
        if outgoing is not None:
            outgoing.__exit__(None, None, None)
        raise _error(target, e.value) from None
    if outgoing is not None:
        try:
            with outgoing.write() as stream:
                for start in range(0, len(body), 4096):
                    stream.blocking_write_and_flush(body[start : start + 4096])
        except Err as e:
            # The host may have refused the request already: say why.
            refused = _refusal(target, pending)
            raise refused or target.failed(f"sending the body failed: {type(e.value).__name__}") from None
        types.OutgoingBody.finish(outgoing, None)
    with pending:
        while True:
            got = pending.get()
            if got is not None:
                break
            with pending.subscribe() as ready:
                ready.block()
    if isinstance(got, Err):
        raise target.failed("the response was already taken")
    answer = got.value if isinstance(got, Ok) else got
    if isinstance(answer, Err):
        raise _error(target, answer.value)
    with answer.value if isinstance(answer, Ok) else answer as response:
        status = response.status()
        with response.headers() as fields:
            headers_out = [(k, v.decode("utf-8", errors="replace")) for k, v in fields.entries()]
        chunks = []
        size = 0
        truncated = False
        with response.consume() as incoming, incoming.stream() as stream:
            while True:
                try:
                    chunk = stream.blocking_read(min(64 * 1024, max(1, max_body - size + 1)))
                except Err as e:
                    if isinstance(e.value, streams.StreamError_Closed):
                        break
                    raise target.failed("reading the body failed") from None
                chunks.append(chunk)
                size += len(chunk)
                if size > max_body:
                    truncated = True
                    break
    return status, headers_out, b"".join(chunks)[:max_body], truncated


def _refusal(target, pending):
    """The host's error for a request it refused, once its answer is there;
    None otherwise."""
    try:
        with pending.subscribe() as ready:
            ready.block()
        got = pending.get()
    except Err:
        return None
    answer = got.value if isinstance(got, Ok) else None
    if isinstance(answer, Err):
        return _error(target, answer.value)
    return None


def _error(target, code):
    if isinstance(code, types.ErrorCode_HttpRequestDenied):
        return target.denied()
    if isinstance(code, types.ErrorCode_DestinationIpProhibited):
        return target.prohibited()
    if isinstance(code, types.ErrorCode_HttpResponseBodySize):
        return target.failed("the response body is larger than the host allows")
    return target.failed(type(code).__name__.removeprefix("ErrorCode_"))
