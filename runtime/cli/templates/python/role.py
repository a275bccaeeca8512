"""A warden role: `__NAME__`, which summarises what the tasks before it did.

The function decorated with @warden.role works one task: it gets a
warden.Task and returns a warden.Outcome (or a str, the summary). It thinks
through warden.llm, remembers through warden.memory and acts through
warden.tools, all checked by the host against the operator's grants.
Raising warden.InvalidTask makes the task fail for good; any other exception
fails this attempt (the host may retry it), never a crash.
"""

import warden_plugin as warden


def prompt(task: warden.Task) -> str:
    """What the model is asked; plain Python, so it is tested natively."""
    return task.brief() + "\nWrite a short summary (at most three sentences) that answers the task."


@warden.role(name="__NAME__", description="Summarises what the tasks before it did")
def run(task: warden.Task) -> warden.Outcome:
    if not task.instructions.strip():
        raise warden.InvalidTask("the task has no instructions")
    # A model the operator did not grant raises warden.Denied.
    summary = warden.llm.ask(prompt(task)).strip()
    warden.log.info(f"summarised task {task.id}")
    return warden.Outcome(summary=summary, output={"words": len(summary.split())})
