"""The errors a tool or role raises, and what the host sees of them.

Raise `InvalidArguments`, `Denied` or `Failed` from a tool and the caller
gets that tool error with your message. Any other exception becomes a
`failed` tool error naming the exception, never a trap: a plugin's bug
costs its caller one failed call, with the traceback in the host's trace.
"""


class ToolError(Exception):
    """A tool's failure as the host sees it. Raise one of the subclasses."""

    #: The case of the WIT `tool-error` variant this maps to.
    kind = "failed"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = str(message)


class InvalidArguments(ToolError):
    """The arguments do not fit the tool (the kit raises it when they do not
    match the annotations)."""

    kind = "invalid-arguments"


class UnknownTool(ToolError):
    """No tool of that name in this plugin."""

    kind = "unknown-tool"


class Denied(ToolError):
    """The host's policy refused something the tool needed (a path, a host,
    a model, a namespace). The host interfaces raise it for you."""

    kind = "denied"


class Failed(ToolError):
    """The tool ran and failed."""

    kind = "failed"


class InvalidTask(Exception):
    """A role's task cannot be worked as given (the role's `invalid-task`)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = str(message)


#: The cases of the WIT `tool-error` variant.
KINDS = ("invalid-arguments", "unknown-tool", "denied", "failed")


def describe(where: str, error: BaseException) -> tuple[str, str]:
    """(kind, message) of what a tool raised, as the host will see it; never
    raises itself, whatever the exception's own methods do."""
    try:
        if isinstance(error, ToolError):
            kind = error.kind if error.kind in KINDS else "failed"
            message = getattr(error, "message", None)
            return kind, message if isinstance(message, str) else str(error)
        text = str(error)
        if isinstance(error, ImportError):
            text += (
                " (a plugin imports its modules when it is built, not while a call runs: "
                "import it at the top of the module)"
            )
        return "failed", f"{where}: {type(error).__name__}{': ' + text if text else ''}"
    except BaseException:  # noqa: BLE001 - a broken __str__ must not trap
        return "failed", f"{where}: {type(error).__name__} (its message could not be read)"
