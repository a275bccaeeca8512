// The `warden:plugin/role` export (`role`), for the entry module the build
// writes. Nothing a role throws leaves here but a role error.
import { InvalidTask, ToolError, describe } from './errors.js';
import { declaredRole, errorKind } from './role.js';
import { log } from './index.js';

function parse(text) {
  try {
    return text.trim() ? JSON.parse(text) : null;
  } catch {
    return text;
  }
}

function task(t) {
  const c = t.context;
  return {
    id: t.id,
    goal: t.goal,
    instructions: t.instructions,
    input: parse(t.input),
    dependencies: c.dependencies.map((d) => ({ ...d, output: parse(d.output) })),
    memories: c.memories.map((h) => ({ id: h.entry.id, content: h.entry.content, kind: h.entry.meta.kind, score: h.score })),
    roles: c.roles,
    attempt: c.attempt,
    lastError: c.lastError,
  };
}

const strings = (v) => Array.isArray(v) && v.every((x) => typeof x === 'string');

function check(ok, what) {
  if (!ok) throw new TypeError(what);
}

/** The outcome a role returned, checked field by field (a wrong type would
 * otherwise trap where the host reads it). */
function outcome(value) {
  const o = typeof value === 'string' ? { summary: value } : value;
  check(o && typeof o.summary === 'string', 'a role returns { summary, output, artifacts, followUps } or a string');
  check(o.artifacts === undefined || strings(o.artifacts), 'artifacts is a list of strings');
  check(o.followUps === undefined || Array.isArray(o.followUps), 'followUps is a list of tasks');
  for (const n of o.followUps ?? []) {
    for (const field of ['id', 'role', 'instructions']) check(typeof n?.[field] === 'string', `a follow-up's ${field} is a string`);
    check(n.dependsOn === undefined || strings(n.dependsOn), "a follow-up's dependsOn is a list of strings");
    check(n.priority === undefined || (Number.isInteger(n.priority) && Math.abs(n.priority) < 2 ** 31), "a follow-up's priority is an integer that fits 32 bits");
  }
  const output = JSON.stringify(o.output === undefined ? null : o.output);
  check(typeof output === 'string', 'output has no JSON form');
  return {
    summary: o.summary,
    output,
    artifacts: o.artifacts ?? [],
    followUps: (o.followUps ?? []).map((n) => ({
      id: n.id,
      role: n.role,
      instructions: n.instructions,
      dependsOn: n.dependsOn ?? [],
      priority: n.priority ?? 0,
      input: n.input === undefined ? undefined : JSON.stringify(n.input),
    })),
  };
}

/** The WIT role-error for what was thrown; never throws itself. */
export function roleError(e) {
  try {
    const known = e instanceof ToolError || e instanceof InvalidTask;
    return { tag: errorKind(e), val: known ? String(e.message) : describe(e) };
  } catch {
    return { tag: 'failed', val: 'the role threw something that cannot be described' };
  }
}

export const role = {
  describe() {
    const { name, description, tools } = declaredRole();
    return { name, description, tools };
  },
  run(t) {
    let r = { name: 'the role' };
    return Promise.resolve()
      .then(() => {
        r = declaredRole();
        return r.run(task(t));
      })
      .then(outcome)
      .catch((e) => {
        try {
          log.debug(`${r.name} threw: ${typeof e?.stack === 'string' ? e.stack : describe(e)}`);
        } catch {
          // Logging is best effort; the error still goes back.
        }
        throw roleError(e);
      });
  },
};
