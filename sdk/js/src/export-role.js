// The `warden:plugin/role` export (`role`), for the entry module the build
// writes. Nothing a role throws leaves here but a role error.
import { InvalidTask, ToolError } from './errors.js';
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

function outcome(value) {
  const o = typeof value === 'string' ? { summary: value } : value;
  if (!o || typeof o.summary !== 'string') {
    throw new TypeError('a role returns { summary, output, artifacts, followUps } or a string');
  }
  return {
    summary: o.summary,
    output: JSON.stringify(o.output === undefined ? null : o.output),
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

export const role = {
  describe() {
    const { name, description, tools } = declaredRole();
    return { name, description, tools };
  },
  run(t) {
    const r = declaredRole();
    return Promise.resolve()
      .then(() => r.run(task(t)))
      .then(outcome)
      .catch((e) => {
        log.debug(`${r.name} threw: ${e?.stack ?? e}`);
        const known = e instanceof ToolError || e instanceof InvalidTask;
        throw { tag: errorKind(e), val: known ? e.message : `${e?.name ?? 'Error'}: ${e?.message ?? e}` };
      });
  },
};
