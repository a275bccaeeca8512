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
