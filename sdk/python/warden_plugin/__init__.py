"""Write a warden plugin in Python: tools as annotated functions, a role as
one function, and the host's interfaces (HTTP, llm, memory, tools) as plain
calls.

```python
import warden_plugin as warden

@warden.tool
def greet(name: str, excited: bool = False) -> dict:
    \"\"\"Greets someone by name.

    Args:
        name: Who to greet.
        excited: End with an exclamation mark.
    \"\"\"
    if not name:
        raise warden.InvalidArguments("`name` is empty")
    warden.log.info(f"greeting {name}")
    return {"message": f"Hello, {name}{'!' if excited else '.'}"}
```

`python -m warden_plugin build DIR` (or `warden plugin build DIR`) turns
DIR/app.py into DIR/NAME.wasm with DIR/warden.toml inside it. The tools are
plain Python, so a test calls them natively: `warden.call("greet",
'{"name": "Ada"}')`.

componentize-py runs your module at build time and snapshots the result:
what it does at import time (reading files, the environment, the clock) is
done once, when building, not per call.
"""

import os

from . import http, llm, log, memory, tools
from ._tools import tool
from ._role import Dependency, NewTask, Outcome, Task, role
from .errors import Denied, Failed, InvalidArguments, InvalidTask, ToolError, UnknownTool

__all__ = [
    "Denied",
    "Dependency",
    "Failed",
    "InvalidArguments",
    "InvalidTask",
    "NewTask",
    "Outcome",
    "Task",
    "ToolError",
    "UnknownTool",
    "call",
    "call_key",
    "http",
    "list_tools",
    "llm",
    "log",
    "memory",
    "role",
    "tool",
    "tools",
]


def call(name: str, arguments: str = "{}") -> str:
    """Calls one of this plugin's tools as the host would: JSON arguments in,
    JSON result out, a ToolError on failure. For tests."""
    from . import _tools

    return _tools.call(name, arguments)


def list_tools() -> list[dict]:
    """This plugin's tools as the host lists them: name, description and the
    JSON Schema of the arguments."""
    from . import _tools

    return [{"name": s.name, "description": s.description, "input_schema": s.schema} for s in _tools.specs()]


def call_key() -> str | None:
    """This call's idempotency key when a run's task made it (`RUN/TASK/N`),
    None otherwise. It stays the same when the task is retried or taken over
    after a crash: key a side effect outside warden by it so it happens
    once."""
    return os.environ.get("WARDEN_CALL_KEY")
