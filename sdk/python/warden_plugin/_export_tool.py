"""The `warden:plugin/tool` export componentize-py looks for (`Tool`).
Imported by the entry module `build` generates, inside the component only."""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import warden_plugin_types as types

from . import _tools
from .errors import describe

_CASES = {
    "invalid-arguments": types.ToolError_InvalidArguments,
    "unknown-tool": types.ToolError_UnknownTool,
    "denied": types.ToolError_Denied,
    "failed": types.ToolError_Failed,
}


class Tool(exports.Tool):
    def list_tools(self):
        return [
            types.ToolSpec(name=s.name, description=s.description, input_schema=json.dumps(s.schema))
            for s in _tools.specs()
        ]

    def call_tool(self, name: str, arguments: str) -> str:
        try:
            return _tools.call(name, arguments)
        except BaseException as e:  # noqa: BLE001 - never trap
            kind, message = describe(name, e)
            raise Err(_CASES[kind](message)) from None
