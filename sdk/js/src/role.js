// A role: one function that works a task and returns its outcome.

import { InvalidTask } from './errors.js';

const ROLE_NAME = /^[a-z][a-z0-9-]{0,63}$/;
let declared;

/** Declares the plugin's role: `role({ name, description, tools }, run)`,
 * `run(task)` returning `{ summary, output, artifacts, followUps }` (or a
 * promise of one, or a string: the summary). `tools` names the tool plugins
 * it wants. */
export function role(spec, run) {
  if (!ROLE_NAME.test(String(spec?.name))) {
    throw new Error(`role name ${JSON.stringify(spec?.name)}: use 1 to 64 lowercase letters, digits and '-', starting with a letter`);
  }
  if (spec.tools !== undefined && (!Array.isArray(spec.tools) || !spec.tools.every((t) => typeof t === 'string'))) {
    throw new Error(`role ${spec.name}: \`tools\` is a list of plugin names, such as tools: ['fs']`);
  }
  if (declared) throw new Error(`a plugin has one role; ${JSON.stringify(declared.name)} is declared already`);
  if (typeof run !== 'function') throw new Error(`role ${spec.name}: the last argument is the function that works a task`);
  declared = { name: spec.name, description: String(spec.description ?? ''), tools: [...(spec.tools ?? [])], run };
}

/** @internal */
export function declaredRole() {
  if (!declared) throw new Error('no role: declare the function that works a task with role({ name, description }, run)');
  return declared;
}

/** The task as a model reads it: the run's goal, the instructions, the
 * input, what the tasks before it did, what memory recalled, and why the
 * last attempt failed. */
export function brief(task) {
  let text = `Goal of the run: ${task.goal}\n\nYour task (${task.id}): ${task.instructions}\n`;
  if (task.input !== null && task.input !== undefined && JSON.stringify(task.input) !== '{}') {
    text += `\nInput: ${JSON.stringify(task.input)}\n`;
  }
  for (const d of task.dependencies ?? []) {
    text += `\nDone before you, by ${d.role} (${d.taskId}): ${d.summary}\n`;
    if (d.artifacts?.length) text += `Files: ${d.artifacts.join(', ')}\n`;
  }
  for (const m of task.memories ?? []) text += `\nRemembered: ${m.content}\n`;
  if (task.lastError) text += `\nAttempt ${Math.max((task.attempt ?? 1) - 1, 0)} failed with: ${task.lastError}\n`;
  return text;
}

/** The role-error case for what a role threw. */
export function errorKind(e) {
  if (e instanceof InvalidTask) return 'invalid-task';
  if (e?.kind === 'denied') return 'denied';
  return 'failed';
}
