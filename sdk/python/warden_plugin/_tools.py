"""The tools a plugin declares, their schemas, and dispatch by name."""

import inspect
import json
import re
import traceback
import typing
from dataclasses import dataclass
from typing import Any, Callable

from . import _schema
from .errors import Failed, InvalidArguments, ToolError, UnknownTool, describe

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass
class Spec:
    name: str
    description: str
    schema: dict
    function: Callable
    parameters: dict  # name -> annotation


_TOOLS: dict[str, Spec] = {}


def tool(function=None, *, name: str | None = None, description: str | None = None):
    """Declares a tool: `@tool` or `@tool(name="...", description="...")`.

    Its parameters are its arguments, described by their annotations (a
    parameter with a default is optional); its docstring's first paragraph
    describes it, and an `Args:` section describes the parameters. It
    returns the result (a dict, list, str, number, bool, None or dataclass).
    """

    def declare(f):
        spec = _spec(f, name or f.__name__, description)
        if spec.name in _TOOLS:
            raise ValueError(f"two tools are named {spec.name!r}; name one with @tool(name=...)")
        _TOOLS[spec.name] = spec
        return f

    return declare(function) if function is not None else declare


def _spec(f, name: str, description: str | None) -> Spec:
    if not _NAME.match(name):
        raise ValueError(
            f"tool name {name!r}: use 1 to 64 lowercase letters, digits, '_' and '-', starting with a letter"
        )
    summary, notes = _parse_doc(inspect.getdoc(f) or "")
    hints = typing.get_type_hints(f, include_extras=True)
    properties = {}
    required = []
    parameters = {}
    for p in inspect.signature(f).parameters.values():
        where = f"tool {name}, parameter {p.name}"
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise _schema.SchemaError(f"{where}: *args and **kwargs have no schema; name each argument")
        if p.kind is p.POSITIONAL_ONLY:
            raise _schema.SchemaError(f"{where}: positional-only; arguments arrive by name, so drop the `/`")
        annotation = hints.get(p.name, Any)
        if p.default is None and not _schema.admits_none(annotation):
            # `x: int = None` means "an int, or nothing".
            annotation = typing.Optional[annotation]
        schema = _schema.schema_of(annotation, where)
        if p.name in notes and "description" not in schema:
            schema = dict(schema, description=notes[p.name])
        if p.default is not p.empty:
            try:
                schema = dict(schema, default=_schema.to_json_value(p.default))
            except TypeError:
                pass
        else:
            required.append(p.name)
        properties[p.name] = schema
        parameters[p.name] = annotation
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    try:
        json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise _schema.SchemaError(f"tool {name}: its schema is not JSON ({e})") from None
    text = description if description is not None else summary
    if not text:
        raise ValueError(f"tool {name}: give it a docstring or @tool(description=...); callers and models read it")
    return Spec(name, text, schema, f, parameters)


def _parse_doc(doc: str) -> tuple[str, dict]:
    """The first paragraph of a docstring, and the parameter notes of its
    `Args:` section (Google style: `name: text` or `name (type): text`)."""
    paragraphs = doc.split("\n\n")
    summary = " ".join(paragraphs[0].split()) if paragraphs else ""
    notes = {}
    lines = doc.splitlines()
    in_args = False
    current = None
    for line in lines:
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if not in_args:
            continue
        if not stripped:
            current = None
            continue
        if not line.startswith((" ", "\t")):
            break
        m = re.match(r"^(\w+)\s*(\([^)]*\))?\s*:\s*(.*)$", stripped)
        if m:
            current = m.group(1)
            notes[current] = m.group(3)
        elif current:
            notes[current] += " " + stripped
    return summary, notes


def specs() -> list[Spec]:
    return list(_TOOLS.values())


def names() -> list[str]:
    return list(_TOOLS)


def call(name: str, arguments: str) -> str:
    """Runs tool `name` with JSON `arguments`, returning its JSON result.
    Every failure is a ToolError: the kit's own for bad arguments or
    results, and any exception the tool raised turned into Failed."""
    spec = _TOOLS.get(name)
    if spec is None:
        known = ", ".join(_TOOLS) or "none"
        raise UnknownTool(f"no tool {name!r} in this plugin; it has: {known}")
    try:
        args = json.loads(arguments, parse_constant=_not_json) if arguments.strip() else {}
    except ValueError as e:
        raise InvalidArguments(f"{name}: the arguments are not JSON: {e}") from None
    except RecursionError:
        raise InvalidArguments(f"{name}: the arguments are nested too deeply") from None
    if not isinstance(args, dict):
        raise InvalidArguments(f"{name}: the arguments must be a JSON object, got {_schema._json_type(args)}")
    try:
        _schema.check_keys(args, spec.parameters, name)
        missing = [
            p
            for p, param in inspect.signature(spec.function).parameters.items()
            if p not in args and param.default is param.empty
        ]
        if missing:
            raise _schema.ArgumentError(f"{name}: missing {', '.join(f'`{m}`' for m in missing)}")
        values = {k: _schema.convert(v, spec.parameters[k], k) for k, v in args.items()}
    except RecursionError:
        raise InvalidArguments(f"{name}: the arguments are nested too deeply") from None
    except _schema.ArgumentError as e:
        raise InvalidArguments(f"{name}: {e}" if not str(e).startswith(name) else str(e)) from None
    result = run_guarded(name, lambda: spec.function(**values))
    try:
        return json.dumps(_schema.to_json_value(result), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as e:
        raise Failed(f"{name}: {e or 'the result is nested too deeply'}") from None


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


def run_guarded(name: str, work: Callable[[], Any]):
    """`work()`, with anything it raises that is not a ToolError turned into
    Failed (its traceback logged at debug)."""
    from . import log

    try:
        return work()
    except ToolError:
        raise
    except BaseException as e:  # noqa: BLE001 - a plugin's bug must not trap
        try:
            log.debug(f"{name} raised:\n{traceback.format_exc()}")
        except BaseException:  # noqa: BLE001
            pass
        raise Failed(describe(name, e)[1]) from None
