// Models and memory through the host (the `llm` and `memory` interfaces),
// checked against the operator's grants: a model or namespace not granted
// throws Denied, a spent budget too; other failures throw Failed.

import { Denied, Failed } from './errors.js';
import { hostComplete, hostMemory, inside, plain } from './host.js';

const ROLES = ['system', 'user', 'assistant', 'tool'];

function message(m) {
  const [role, content, toolCallId] = Array.isArray(m) ? m : [m.role, m.content, m.toolCallId];
  if (!ROLES.includes(role)) throw new Error(`message role ${JSON.stringify(role)}: use one of ${ROLES.join(', ')}`);
  return { role, content: String(content ?? ''), toolCalls: [], toolCallId: toolCallId ?? undefined };
}

/**
 * One completion. `messages` are `{ role, content }` objects or
 * `[role, content]` pairs; `options`: model, tools (`{ name, description,
 * parameters }`), maxTokens, temperature, stop, private, responseSchema.
 * Returns `{ text, toolCalls, finishReason, usage, cost, provider, model }`.
 */
function complete(messages, options = {}) {
  const request = {
    model: options.model ?? '',
    messages: messages.map(message),
    tools: (options.tools ?? []).map((t) => ({
      name: t.name,
      description: t.description ?? '',
      parameters: JSON.stringify(t.parameters ?? {}),
    })),
    maxTokens: options.maxTokens,
    temperature: options.temperature,
    stop: options.stop ?? [],
    private: Boolean(options.private),
    responseSchema: options.responseSchema === undefined ? undefined : JSON.stringify(options.responseSchema),
  };
  return plain(inside('llm', () => hostComplete(request)));
}

export const llm = {
  complete,
  /** The text of one user message's completion. */
  ask: (prompt, options = {}) => complete([['user', prompt]], options).text,
};

const META = ['kind', 'source', 'taskId', 'version', 'platform'];

function meta(m = {}) {
  const unknown = Object.keys(m).filter((k) => !META.includes(k) && k !== 'tags' && k !== 'extra');
  if (unknown.length) throw new Error(`memory meta: unknown ${unknown.join(', ')}; it takes ${META.join(', ')}, tags, extra`);
  return {
    ...Object.fromEntries(META.map((k) => [k, m[k] ?? undefined])),
    tags: m.tags ?? [],
    extra: m.extra === undefined ? undefined : JSON.stringify(m.extra),
  };
}

function filter(f = {}) {
  const known = [...META, 'tags', 'createdAfter', 'createdBefore'];
  const unknown = Object.keys(f).filter((k) => !known.includes(k));
  if (unknown.length) throw new Error(`memory filter: unknown ${unknown.join(', ')}; it takes ${known.join(', ')}`);
  const time = (t) => (t === undefined ? undefined : BigInt(t));
  return {
    ...Object.fromEntries(META.map((k) => [k, f[k] ?? undefined])),
    tags: f.tags ?? [],
    createdAfter: time(f.createdAfter),
    createdBefore: time(f.createdBefore),
  };
}

function entry(e) {
  const out = plain(e);
  out.meta.extra = out.meta.extra === undefined ? undefined : JSON.parse(out.meta.extra);
  return out;
}

const memoryErrors = (tag, text) =>
  tag === 'denied' ? new Denied(`memory: ${text}`) : new Failed(`memory ${tag}: ${text}`);
const remember = (work) => inside('memory', work, memoryErrors);

export const memory = {
  /** Stores `content` with metadata; returns its id. */
  store: (namespace, content, m) => remember(() => hostMemory.store(namespace, content, meta(m))),
  /** The best `topK` entries for `query`, by `mode` (vector, text or
   * hybrid), filtered by metadata: `{ topK, mode, ...filter }`. */
  search: (namespace, query, { topK = 5, mode = 'hybrid', ...f } = {}) =>
    remember(() => hostMemory.search(namespace, query, topK, filter(f), mode)).map((hit) => ({
      ...entry(hit.entry),
      score: hit.score,
    })),
  get: (namespace, id) => entry(remember(() => hostMemory.get(namespace, id))),
  find: (namespace, { limit = 100, ...f } = {}) =>
    remember(() => hostMemory.find(namespace, filter(f), limit)).map(entry),
  delete: (namespace, id) => remember(() => hostMemory['delete'](namespace, id)),
};
