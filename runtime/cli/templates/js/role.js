// A warden role: `__NAME__`, which summarises what the tasks before it did.
//
// role({ name, description }, run) declares it: `run(task)` works one task
// and returns { summary, output, artifacts, followUps } (or a string, the
// summary). It thinks through llm, remembers through memory and acts
// through the tools of 'warden-plugin/tools', all checked by the host
// against the operator's grants. Throwing InvalidTask makes the task fail
// for good; anything else fails this attempt (the host may retry it),
// never a crash.
import { InvalidTask, brief, llm, log, role } from 'warden-plugin';

/** What the model is asked; plain JavaScript, so it is tested natively. */
export function prompt(task) {
  return `${brief(task)}\nWrite a short summary (at most three sentences) that answers the task.`;
}

role({ name: '__NAME__', description: 'Summarises what the tasks before it did' }, (task) => {
  if (!task.instructions.trim()) throw new InvalidTask('the task has no instructions');
  // A model the operator did not grant throws Denied.
  const summary = llm.ask(prompt(task)).trim();
  log.info(`summarised task ${task.id}`);
  return { summary, output: { words: summary.split(/\s+/).length } };
});
