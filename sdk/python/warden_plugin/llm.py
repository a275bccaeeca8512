"""Thinking through a model the host chooses and pays for (the `llm`
interface). A model the operator did not grant raises `Denied`; a spent
budget raises `Denied` too; no answer raises `Failed`."""

from . import _host
from .errors import Denied, Failed


def _errors(value):
    kind, message = _host.variant_message(value)
    if kind in ("denied", "budget-exceeded"):
        return Denied(f"llm {kind}: {message}")
    return Failed(f"llm {kind}: {message}")


def complete(
    messages,
    *,
    model: str = "",
    tools=(),
    max_tokens: int | None = None,
    temperature: float | None = None,
    stop=(),
    private: bool = False,
    response_schema: dict | None = None,
):
    """One completion. `messages` are `{"role": ..., "content": ...}` dicts
    (roles: system, user, assistant, tool) or `(role, content)` pairs;
    `tools` are `{"name", "description", "parameters"}` dicts. Returns the
    host's completion: `.text`, `.tool_calls`, `.usage`, `.cost`,
    `.provider`, `.model`."""
    import json

    llm = _host.require("llm", "llm")
    wit_messages = []
    for m in messages:
        role, content = (m["role"], m.get("content", "")) if isinstance(m, dict) else m
        wit_messages.append(
            llm.Message(
                role=getattr(llm.MessageRole, str(role).upper()),
                content="" if content is None else str(content),
                tool_calls=[],
                tool_call_id=m.get("tool_call_id") if isinstance(m, dict) else None,
            )
        )
    functions = [
        llm.Function(name=t["name"], description=t.get("description", ""), parameters=json.dumps(t.get("parameters", {})))
        for t in tools
    ]
    request = llm.Request(
        model=model,
        messages=wit_messages,
        tools=functions,
        max_tokens=max_tokens,
        temperature=temperature,
        stop=list(stop),
        private=private,
        response_schema=None if response_schema is None else json.dumps(response_schema),
    )
    return _host.unwrap(lambda: llm.complete(request), _errors)


def ask(prompt: str, **options) -> str:
    """The text of one user message's completion."""
    return complete([("user", prompt)], **options).text
