// Write a warden plugin in JavaScript: tools as functions with a JSON
// Schema, a role as one function, and the host's interfaces (HTTP, llm,
// memory) as plain calls. `warden-plugin build DIR` (or `warden plugin
// build DIR`) turns DIR/app.js into DIR/NAME.wasm with DIR/warden.toml
// inside. See README.md.

import { Failed, InvalidArguments, ToolError, UnknownTool, asToolError, describe } from './errors.js';
import { getEnvironment, hostLog, inside } from './host.js';
import { jsonType, problem } from './schema.js';

export { Denied, Failed, InvalidArguments, InvalidTask, ToolError, UnknownTool } from './errors.js';
export { fs } from './fs.js';
export { http } from './http.js';
export { llm, memory } from './thinking.js';
export { brief, role } from './role.js';

const TOOLS = new Map();
const TOOL_NAME = /^[a-z][a-z0-9_-]{0,63}$/;

/**
 * Declares a tool: `tool(name, { description, schema }, handler)`.
 * `schema` is the JSON Schema of the arguments object (what callers and
 * models see; the arguments are checked against it before `handler`
 * runs). `handler(args)` returns the result (any JSON value, or a promise
 * of one) or throws.
 */
export function tool(name, spec, handler) {
  if (typeof spec === 'function') [spec, handler] = [{}, spec];
  if (!TOOL_NAME.test(String(name))) {
    throw new Error(`tool name ${JSON.stringify(name)}: use 1 to 64 lowercase letters, digits, '_' and '-', starting with a letter`);
  }
  if (TOOLS.has(name)) throw new Error(`two tools are named ${JSON.stringify(name)}`);
  if (typeof handler !== 'function') throw new Error(`tool ${name}: the last argument is the function that runs it`);
  const description = spec?.description;
  if (typeof description !== 'string' || !description.trim()) {
    throw new Error(`tool ${name}: give it a description ({ description: '…' }); callers and models read it`);
  }
  const schema = spec.schema ?? { type: 'object', properties: {}, additionalProperties: false };
  if (schema.type !== 'object') {
    throw new Error(`tool ${name}: its schema describes the arguments object, so its type is "object"`);
  }
  try {
    JSON.parse(JSON.stringify(schema));
  } catch (e) {
    throw new Error(`tool ${name}: its schema is not JSON (${e.message})`);
  }
  TOOLS.set(name, { name, description, schema, handler });
}

/** This plugin's tools as the host lists them. */
export function listTools() {
  return [...TOOLS.values()].map(({ name, description, schema }) => ({ name, description, inputSchema: schema }));
}

/** Calls one of this plugin's tools as the host would: JSON arguments in,
 * JSON result out (a promise), a ToolError on failure. For tests. */
export async function call(name, args = '{}') {
  const spec = TOOLS.get(name);
  if (!spec) {
    throw new UnknownTool(`no tool '${name}' in this plugin; it has: ${[...TOOLS.keys()].join(', ') || 'none'}`);
  }
  let value;
  try {
    value = String(args).trim() ? JSON.parse(args) : {};
  } catch (e) {
    throw new InvalidArguments(`${name}: the arguments are not JSON: ${e.message}`);
  }
  if (jsonType(value) !== 'an object') {
    throw new InvalidArguments(`${name}: the arguments must be a JSON object, got ${jsonType(value)}`);
  }
  const wrong = problem(value, spec.schema, '');
  if (wrong) throw new InvalidArguments(`${name}: ${wrong.replace(/^: /, '')}`);
  let result;
  try {
    result = await spec.handler(value);
  } catch (e) {
    if (!(e instanceof ToolError)) {
      try {
        log.debug(`${name} threw: ${typeof e?.stack === 'string' ? e.stack : describe(e)}`);
      } catch {
        // Logging is best effort; the error still goes back.
      }
    }
    throw asToolError(name, e);
  }
  try {
    return toJson(result === undefined ? null : result);
  } catch (e) {
    throw new Failed(`${name}: the result is not JSON: ${e.message}`);
  }
}

/** `value` as JSON text, refusing what JSON.stringify would quietly turn
 * into something else (NaN into null, a Map into {}, a function into
 * nothing). */
function toJson(value) {
  const text = JSON.stringify(value, (key, v) => {
    const where = key === '' ? 'it' : JSON.stringify(key);
    if (typeof v === 'number' && !Number.isFinite(v)) throw new TypeError(`${where} is ${v}`);
    if (typeof v === 'function' || typeof v === 'symbol') throw new TypeError(`${where} is a ${typeof v}`);
    if (v instanceof Map || v instanceof Set) throw new TypeError(`${where} is a ${v.constructor.name}; use an object or an array`);
    return v;
  });
  if (typeof text !== 'string') throw new TypeError('it has no JSON form');
  return text;
}

/** @internal the names declared, for the build's check. */
export function declaredTools() {
  return [...TOOLS.keys()];
}

/** Logging into the host's trace (natively, to stderr). */
export const log = Object.fromEntries(
  ['trace', 'debug', 'info', 'warn', 'error'].map((level) => [level, (message) => hostLog(level, String(message))]),
);

/** This call's idempotency key when a run's task made it (`RUN/TASK/N`),
 * undefined otherwise; the same when the task is retried or taken over
 * after a crash. */
export function callKey() {
  const entry = inside('the environment', () => getEnvironment()).find(([k]) => k === 'WARDEN_CALL_KEY');
  return entry?.[1];
}

