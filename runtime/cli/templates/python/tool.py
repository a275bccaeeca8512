"""A warden tool plugin: `greet`.

Each function decorated with @warden.tool is a tool. Its annotated
parameters are its arguments (checked before it runs; the schema callers
see is made from them), its docstring describes it, and what it returns is
the result, as JSON. Raising warden.InvalidArguments, warden.Denied or
warden.Failed gives the caller that error; any other exception comes back
as a `failed` tool error, never a crash.

Import what you need at the top of the file: the build imports this module
and snapshots it, and a module not imported then cannot be imported while a
call runs.
"""

import warden_plugin as warden


@warden.tool
def greet(name: str, excited: bool = False) -> dict:
    """Greets someone by name.

    Args:
        name: Who to greet.
        excited: End with an exclamation mark instead of a full stop.
    """
    if not name:
        # Comes back to the caller as an `invalid-arguments` tool error.
        raise warden.InvalidArguments("`name` is empty")
    warden.log.info(f"greeting {name}")
    return {"message": f"Hello, {name}{'!' if excited else '.'}"}
