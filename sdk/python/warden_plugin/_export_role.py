"""The `warden:plugin/role` export componentize-py looks for (`Role`).
Imported by the entry module `build` generates, inside the component only."""

import traceback

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import role as wit

from . import _role, log
from ._role import Dependency, Task


def _task(task: "wit.Task") -> Task:
    ctx = task.context
    return Task(
        id=task.id,
        goal=task.goal,
        instructions=task.instructions,
        input=_role.loads(task.input),
        dependencies=[
            Dependency(d.task_id, d.role, d.summary, _role.loads(d.output), list(d.artifacts)) for d in ctx.dependencies
        ],
        memories=[
            {"id": h.entry.id, "content": h.entry.content, "score": h.score, "kind": h.entry.meta.kind}
            for h in ctx.memories
        ],
        roles=[{"name": r.name, "description": r.description, "tools": list(r.tools)} for r in ctx.roles],
        attempt=ctx.attempt,
        last_error=ctx.last_error,
    )


def _outcome(outcome: _role.Outcome) -> "wit.Outcome":
    return wit.Outcome(
        summary=outcome.summary,
        output=_role.dumps(outcome.output),
        artifacts=list(outcome.artifacts),
        follow_ups=[
            wit.NewTask(
                id=t.id,
                role=t.role,
                instructions=t.instructions,
                depends_on=list(t.depends_on),
                priority=t.priority,
                input=None if t.input is None else _role.dumps(t.input),
            )
            for t in outcome.follow_ups
        ],
    )


_ERRORS = {
    "invalid-task": wit.RoleError_InvalidTask,
    "denied": wit.RoleError_Denied,
    "failed": wit.RoleError_Failed,
}


class Role(exports.Role):
    def describe(self):
        r = _role.declared()
        return wit.RoleSpec(name=r.name, description=r.description, tools=list(r.tools))

    def run(self, task):
        try:
            r = _role.declared()
            return _outcome(_role.outcome_of(r.function(_task(task))))
        except BaseException as e:  # noqa: BLE001 - never trap
            try:
                log.debug(f"the role raised:\n{traceback.format_exc()}")
            except BaseException:  # noqa: BLE001
                pass
            kind, message = _role.describe_error(e)
            raise Err(_ERRORS[kind](message)) from None
