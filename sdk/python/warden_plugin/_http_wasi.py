"""The wasi:http side of `warden_plugin.http` (inside a component only)."""

from componentize_py_types import Err, Ok

from .errors import InvalidArguments


def send(types, target, method, headers, body, max_body):
    """Sends the request; returns (status, headers, body, truncated)."""
    from wit_world.imports import outgoing_handler, streams

    entries = [(str(k).lower(), str(v).encode()) for k, v in headers.items()]
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
    outgoing = request.body() if body is not None else None
    try:
        pending = outgoing_handler.handle(request, None)
    except Err as e:
        raise _error(types, target, e.value) from None
    if outgoing is not None:
        stream = outgoing.write()
        try:
            for start in range(0, len(body), 4096):
                stream.blocking_write_and_flush(body[start : start + 4096])
        except Err as e:
            raise target.failed(f"sending the body failed: {e.value}") from None
        finally:
            stream.__exit__(None, None, None)
        types.OutgoingBody.finish(outgoing, None)
    while True:
        got = pending.get()
        if got is None:
            pending.subscribe().block()
            continue
        if isinstance(got, Err):
            raise target.failed("the response was already taken")
        answer = got.value if isinstance(got, Ok) else got
        if isinstance(answer, Err):
            raise _error(types, target, answer.value)
        response = answer.value if isinstance(answer, Ok) else answer
        break
    status = response.status()
    headers_out = [(k, v.decode("utf-8", errors="replace")) for k, v in response.headers().entries()]
    incoming = response.consume()
    stream = incoming.stream()
    chunks = []
    size = 0
    truncated = False
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


def _error(types, target, code):
    if isinstance(code, types.ErrorCode_HttpRequestDenied):
        return target.denied()
    if isinstance(code, types.ErrorCode_DestinationIpProhibited):
        return target.prohibited()
    if isinstance(code, types.ErrorCode_HttpResponseBodySize):
        return target.failed("the response body is larger than the host allows")
    return target.failed(type(code).__name__.removeprefix("ErrorCode_"))
