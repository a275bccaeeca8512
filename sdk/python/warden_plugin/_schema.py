"""Python type hints as JSON Schema, and JSON values checked against them.

A tool's parameters are described by their annotations. The same
annotations that produce the schema `list-tools` advertises check the
arguments of each call, so a caller learns what was wrong (`count: expected
an integer, got a string`) instead of the tool failing halfway.
"""

import collections.abc
import dataclasses
import enum
import json
import types
import typing
from typing import Any


# What `typing.get_origin` gives for list[T], List[T], Sequence[T], Iterable[T].
_SEQUENCES = (list, collections.abc.Sequence, collections.abc.Iterable)


class SchemaError(TypeError):
    """An annotation that has no JSON Schema (raised when a tool is declared,
    so at build time)."""


class ArgumentError(ValueError):
    """A JSON value that does not match its annotation; the message names
    the path to it."""


_SUPPORTED = (
    "str, int, float, bool, None, list[...], tuple[..., ...], dict[str, ...], "
    "Optional[...], Union[...], Literal[...], an Enum, a dataclass, a TypedDict "
    "or Any"
)


def _is_typeddict(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def _hints(tp) -> dict:
    return typing.get_type_hints(tp, include_extras=True)


def schema_of(tp, where: str) -> dict:
    """The JSON Schema of annotation `tp`; `where` names it in errors."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is object:
        return {}
    if origin in (typing.Required, typing.NotRequired):
        return schema_of(args[0], where)
    if origin is typing.Annotated:
        schema = schema_of(args[0], where)
        notes = [a for a in args[1:] if isinstance(a, str)]
        if notes:
            schema = dict(schema, description=" ".join(notes))
        return schema
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is None or tp is type(None):
        return {"type": "null"}
    if tp is list or tp is tuple:
        return {"type": "array"}
    if tp is dict:
        return {"type": "object"}
    if origin is typing.Literal:
        try:
            return {"enum": [to_json_value(a) for a in args]}
        except TypeError as e:
            raise SchemaError(f"{where}: {e}") from None
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        schemas = [schema_of(a, where) for a in options]
        if len(options) < len(args):
            schemas.append({"type": "null"})
        return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    if origin in _SEQUENCES:
        return {"type": "array", "items": schema_of(args[0], where) if args else {}}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": schema_of(args[0], where)}
        return {
            "type": "array",
            "prefixItems": [schema_of(a, where) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if origin is dict:
        if args and args[0] is not str:
            raise SchemaError(f"{where}: {_name(tp)} has keys that are not strings, which JSON objects cannot have; use dict[str, ...]")
        return {"type": "object", "additionalProperties": schema_of(args[1], where) if args else {}}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [member.value for member in tp]}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = _hints(tp)
        properties = {}
        required = []
        for field in _init_fields(tp):
            properties[field.name] = schema_of(hints[field.name], f"{where}.{field.name}")
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                required.append(field.name)
        schema = {"type": "object", "properties": properties, "additionalProperties": False}
        if required:
            schema["required"] = required
        doc = _own_doc(tp)
        if doc:
            schema["description"] = doc
        return schema
    if _is_typeddict(tp):
        hints = _hints(tp)
        schema = {
            "type": "object",
            "properties": {k: schema_of(v, f"{where}.{k}") for k, v in hints.items()},
            "additionalProperties": False,
        }
        if tp.__required_keys__:
            schema["required"] = sorted(tp.__required_keys__)
        return schema
    raise SchemaError(f"{where}: {_name(tp)} has no JSON Schema; annotate it with {_SUPPORTED}")


def _own_doc(tp) -> str:
    doc = tp.__doc__ or ""
    # A dataclass without a docstring gets its signature as one.
    if doc.startswith(tp.__name__ + "("):
        return ""
    return " ".join(doc.split())


def _name(tp) -> str:
    if typing.get_origin(tp) is None and hasattr(tp, "__name__"):
        return tp.__name__
    return repr(tp).replace("typing.", "")


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def convert(value, tp, path: str):
    """`value` (parsed JSON) as annotation `tp` asks for it: objects become
    dataclasses, strings become Enum members. Raises ArgumentError naming
    `path` when it does not match."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin in (typing.Annotated, typing.Required, typing.NotRequired):
        return convert(value, args[0], path)

    def wrong(expected: str):
        return ArgumentError(f"{path}: expected {expected}, got {_json_type(value)}")

    if tp is str:
        if not isinstance(value, str):
            raise wrong("a string")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise wrong("a boolean")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise wrong("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong("a number")
        return float(value)
    if tp is None or tp is type(None):
        if value is not None:
            raise wrong("null")
        return None
    if tp is list or tp is tuple:
        if not isinstance(value, list):
            raise wrong("an array")
        return value if tp is list else tuple(value)
    if tp is dict:
        if not isinstance(value, dict):
            raise wrong("an object")
        return value
    if origin is typing.Literal:
        for a in args:
            if _same(to_json_value(a), value):
                return a
        shown = ", ".join(_show(to_json_value(a)) for a in args)
        raise ArgumentError(f"{path}: expected one of {shown}, got {_show(value)}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = []
        for option in args:
            if option is type(None):
                continue
            try:
                return convert(value, option, path)
            except ArgumentError as e:
                problems.append(str(e))
        raise ArgumentError(problems[0] if len(problems) == 1 else f"{path}: matches none of: " + "; ".join(problems))
    if origin in _SEQUENCES:
        if not isinstance(value, list):
            raise wrong("an array")
        item = args[0] if args else Any
        return [convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, list):
            raise wrong("an array")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ArgumentError(f"{path}: expected an array of {len(args)} items, got {len(value)}")
        return tuple(convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise wrong("an object")
        item = args[1] if args else Any
        return {k: convert(v, item, f"{path}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        for member in tp:
            if _same(member.value, value):
                return member
        raise ArgumentError(f"{path}: expected one of {', '.join(_show(m.value) for m in tp)}, got {_show(value)}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise wrong("an object")
        hints = _hints(tp)
        fields = {f.name: f for f in _init_fields(tp)}
        check_keys(value, fields, path)
        missing = [
            name
            for name, f in fields.items()
            if name not in value and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ArgumentError(f"{path}: missing {', '.join(f'`{m}`' for m in missing)}")
        converted = {k: convert(v, hints[k], f"{path}.{k}") for k, v in value.items()}
        try:
            return tp(**converted)
        except (TypeError, ValueError) as e:
            # The dataclass's own checks (__post_init__) refused it.
            raise ArgumentError(f"{path}: {e}") from None
    if _is_typeddict(tp):
        if not isinstance(value, dict):
            raise wrong("an object")
        hints = _hints(tp)
        check_keys(value, hints, path)
        missing = [k for k in sorted(tp.__required_keys__) if k not in value]
        if missing:
            raise ArgumentError(f"{path}: missing {', '.join(f'`{m}`' for m in missing)}")
        return {k: convert(v, hints[k], f"{path}.{k}") for k, v in value.items()}
    raise ArgumentError(f"{path}: {_name(tp)} cannot be read from JSON")


def _init_fields(tp) -> list:
    """The fields a dataclass takes when it is made (not `init=False`)."""
    return [f for f in dataclasses.fields(tp) if f.init]


def _same(a, b) -> bool:
    """JSON equality: 1 and 1.0 are the same number, true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def admits_none(tp) -> bool:
    """Whether annotation `tp` takes null."""
    if tp is Any or tp is object or tp is None or tp is type(None):
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return admits_none(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return any(admits_none(a) for a in typing.get_args(tp))
    return False


def check_keys(value: dict, known, path: str):
    unknown = [k for k in value if k not in known]
    if unknown:
        takes = ", ".join(known) or "nothing"
        raise ArgumentError(f"{path}: unknown {', '.join(f'`{k}`' for k in unknown)}; it takes {takes}")


def _show(value) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def to_json_value(value, path: str = "the result"):
    """`value` as plain JSON data: dataclasses become objects, Enum members
    their values, tuples arrays. Raises TypeError naming what is not JSON."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise TypeError(f"{path} is {value}, which JSON cannot carry")
        return value
    if isinstance(value, enum.Enum):
        return to_json_value(value.value, path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json_value(getattr(value, f.name), f"{path}.{f.name}") for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{path} has the key {k!r}, which is not a string; JSON object keys are strings")
            out[k] = to_json_value(v, f"{path}.{k}")
        return out
    raise TypeError(
        f"{path} is a {type(value).__name__}, which is not JSON; return a dict, list, str, number, bool, None or a dataclass"
    )
