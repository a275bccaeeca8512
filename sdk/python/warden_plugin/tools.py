"""A role's tools: the tool plugins the operator gave the run, called
through the host (the `tools` interface). A tool's error is raised as the
kit's ToolError of the same kind."""

import json

from . import _host
from .errors import Denied, Failed, InvalidArguments, UnknownTool

_KINDS = {
    "invalid-arguments": InvalidArguments,
    "unknown-tool": UnknownTool,
    "denied": Denied,
    "failed": Failed,
}


def _errors(value):
    kind, message = _host.variant_message(value)
    return _KINDS.get(kind, Failed)(message)


def list() -> list[dict]:  # noqa: A001 - mirrors the interface
    """The tools this role may call: name, description, input_schema."""
    t = _host.require("tools", "tools")
    return [
        {"name": s.name, "description": s.description, "input_schema": json.loads(s.input_schema)} for s in t.list_tools()
    ]


def call(name: str, arguments: dict | None = None):
    """Calls tool `name` (qualified, `plugin.tool`) with `arguments`;
    returns its parsed JSON result."""
    t = _host.require("tools", "tools")
    text = _host.unwrap(lambda: t.call_tool(name, json.dumps(arguments or {})), _errors)
    return json.loads(text)
