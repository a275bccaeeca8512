"""Access to the bindings componentize-py generates for the plugin's world.

They exist only inside a component (as the `wit_world` package); run
natively, in a project's tests, there is no host and `imports` returns
None. Module names follow componentize-py's: `warden_plugin_types` and
`wasi_http_types` because both packages name an interface `types`.
"""

import importlib

from .errors import Failed


def imports(name: str):
    """The bindings of the imported interface `name`, or None outside a
    component."""
    try:
        return importlib.import_module(f"wit_world.imports.{name}")
    except ImportError:
        return None


def require(name: str, what: str):
    """The bindings of `name`; raises Failed naming `what` outside warden or
    when the plugin's world does not import it."""
    bindings = imports(name)
    if bindings is None:
        if imports("log") is None:
            raise Failed(f"{what} is only available inside warden (build the plugin and call it there)")
        raise Failed(f"{what} is not available to this kind of plugin")
    return bindings


def unwrap(call, errors):
    """Runs `call()`, turning the host's error variant into the kit's
    exception: `errors(value)` maps a variant case to an exception."""
    from componentize_py_types import Err

    try:
        return call()
    except Err as e:
        raise errors(e.value) from None


def variant_message(value) -> tuple[str, str]:
    """(case, message) of a WIT variant value such as `MemoryError_Denied`:
    the case in kebab-case, as the WIT names it."""
    case = type(value).__name__.split("_", 1)[-1]
    kebab = "".join("-" + c.lower() if c.isupper() else c for c in case).lstrip("-")
    return kebab, str(getattr(value, "value", ""))
