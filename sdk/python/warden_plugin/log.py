"""Logging into the host's trace, tagged with the plugin and tenant.

Inside warden the lines go to the host's `log` interface; run natively (in a
project's tests) they go to stderr.
"""

import os
import sys

from . import _host

_LEVELS = ("trace", "debug", "info", "warn", "error")


def log(level: str, message: str) -> None:
    if level not in _LEVELS:
        raise ValueError(f"log level {level!r}: use one of {', '.join(_LEVELS)}")
    bindings = _host.imports("log")
    if bindings is None:
        # Natively (a project's tests): info and above on stderr, or all of
        # it with WARDEN_LOG=trace or debug.
        shown = os.environ.get("WARDEN_LOG", "info")
        if _LEVELS.index(level) >= _LEVELS.index(shown if shown in _LEVELS else "info"):
            print(f"[{level}] {message}", file=sys.stderr)
        return
    bindings.log(getattr(bindings.Level, level.upper()), str(message))


def trace(message: str) -> None:
    log("trace", message)


def debug(message: str) -> None:
    log("debug", message)


def info(message: str) -> None:
    log("info", message)


def warn(message: str) -> None:
    log("warn", message)


def error(message: str) -> None:
    log("error", message)
