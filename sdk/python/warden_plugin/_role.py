"""A role: one function that works a task and returns its outcome."""

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from . import _schema
from .errors import ToolError

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,63}$")


@dataclass
class Dependency:
    """A finished task this one depends on."""

    task_id: str
    role: str
    summary: str
    output: Any
    artifacts: list[str]


@dataclass
class Task:
    """What the role is asked to do. `input` and each dependency's `output`
    are parsed JSON; `memories` are the host's memory hits for the goal."""

    id: str
    goal: str
    instructions: str
    input: Any
    dependencies: list[Dependency] = field(default_factory=list)
    memories: list[dict] = field(default_factory=list)
    roles: list[dict] = field(default_factory=list)
    attempt: int = 1
    last_error: str | None = None

    def dependency(self, task_id: str) -> Dependency | None:
        return next((d for d in self.dependencies if d.task_id == task_id), None)

    def brief(self) -> str:
        """The task as a model reads it: the run's goal, the instructions,
        the input, what the tasks before it did, what memory recalled, and
        why the last attempt failed."""
        text = f"Goal of the run: {self.goal}\n\nYour task ({self.id}): {self.instructions}\n"
        if self.input not in (None, {}):
            text += f"\nInput: {dumps(self.input)}\n"
        for d in self.dependencies:
            text += f"\nDone before you, by {d.role} ({d.task_id}): {d.summary}\n"
            if d.artifacts:
                text += f"Files: {', '.join(d.artifacts)}\n"
        for m in self.memories:
            text += f"\nRemembered: {m['content']}\n"
        if self.last_error:
            text += f"\nAttempt {max(self.attempt - 1, 0)} failed with: {self.last_error}\n"
        return text


@dataclass
class NewTask:
    """A follow-up task for the run's planner to add."""

    id: str
    role: str
    instructions: str
    depends_on: list[str] = field(default_factory=list)
    priority: int = 0
    input: Any = None


@dataclass
class Outcome:
    """What a role hands back: a summary for people and later tasks, an
    output (any JSON), artifact paths and follow-up tasks."""

    summary: str
    output: Any = None
    artifacts: list[str] = field(default_factory=list)
    follow_ups: list[NewTask] = field(default_factory=list)


@dataclass
class _Role:
    name: str
    description: str
    tools: list[str]
    function: Callable[[Task], Any]


_ROLE: list[_Role] = []


def role(*, name: str, description: str, tools: list[str] = ()):
    """Declares the plugin's role: `@role(name=..., description=...,
    tools=[...])` on a function taking a Task and returning an Outcome (or a
    str, taken as the summary). `tools` names the tool plugins it wants."""

    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"role name {name!r}: use 1 to 64 lowercase letters, digits and '-', starting with a letter")
    if isinstance(tools, str) or not all(isinstance(t, str) for t in tools):
        raise ValueError(f"role {name}: `tools` is a list of plugin names, such as tools=[\"fs\"]")

    def declare(function):
        if _ROLE:
            raise ValueError(f"a plugin has one role; {_ROLE[0].name!r} is declared already")
        _ROLE.append(_Role(name, description, list(tools), function))
        return function

    return declare


def declared() -> _Role:
    if not _ROLE:
        raise LookupError("no role: decorate the function that works a task with @warden_plugin.role(...)")
    return _ROLE[0]


def outcome_of(value) -> Outcome:
    """The Outcome a role returned, checked field by field (a wrong type
    would otherwise trap where the host reads it)."""
    if isinstance(value, str):
        return Outcome(summary=value)
    if not isinstance(value, Outcome):
        raise TypeError(f"a role returns an Outcome or a str, not a {type(value).__name__}")
    _check(isinstance(value.summary, str), "Outcome.summary is a str")
    _check(_strings(value.artifacts), "Outcome.artifacts is a list of str")
    _check(isinstance(value.follow_ups, (list, tuple)), "Outcome.follow_ups is a list of NewTask")
    for task in value.follow_ups:
        _check(isinstance(task, NewTask), "Outcome.follow_ups is a list of NewTask")
        for field_name in ("id", "role", "instructions"):
            _check(isinstance(getattr(task, field_name), str), f"NewTask.{field_name} is a str")
        _check(_strings(task.depends_on), "NewTask.depends_on is a list of str")
        _check(
            isinstance(task.priority, int) and not isinstance(task.priority, bool) and -(2**31) <= task.priority < 2**31,
            "NewTask.priority is an int that fits 32 bits",
        )
    return value


def _strings(value) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise TypeError(what)


def dumps(value) -> str:
    return json.dumps(_schema.to_json_value(value), ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def loads(text: str):
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return text


def describe_error(e: BaseException) -> tuple[str, str]:
    """(role-error case, message) for what a role raised; never raises."""
    from .errors import InvalidTask, describe

    if isinstance(e, InvalidTask):
        message = getattr(e, "message", None)
        return "invalid-task", message if isinstance(message, str) else describe("role", e)[1]
    kind, message = describe("role", e)
    return ("denied" if kind == "denied" else "failed"), message
