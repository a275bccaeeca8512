// JSON values checked against a tool's JSON Schema before the tool runs, so
// a caller learns what was wrong (`count: expected an integer, got a
// string`) instead of the tool failing halfway. The keywords checked:
// type, properties, required, additionalProperties, items, enum, const,
// anyOf. Others are advertised to callers but not checked here.

export function jsonType(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'boolean':
      return 'a boolean';
    case 'number':
      if (!Number.isFinite(value)) return `${value}`;
      return Number.isInteger(value) ? 'an integer' : 'a number';
    case 'string':
      return 'a string';
    case 'object':
      return 'an object';
    default:
      return typeof value;
  }
}

const NAMES = {
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'a boolean',
  object: 'an object',
  array: 'an array',
  null: 'null',
};

function isType(value, type) {
  switch (type) {
    case 'string':
      return typeof value === 'string';
    case 'integer':
      return Number.isInteger(value);
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'boolean':
      return typeof value === 'boolean';
    case 'null':
      return value === null;
    case 'array':
      return Array.isArray(value);
    case 'object':
      return value !== null && typeof value === 'object' && !Array.isArray(value);
    default:
      return true;
  }
}

/** JSON equality: same type and value, objects regardless of key order. */
function equal(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && equal(a[k], b[k]));
}

/** The first way `value` does not fit `schema`, as a message naming the
 * path to it, or null when it fits. */
export function problem(value, schema, path) {
  if (schema === true || schema === undefined || schema === null) return null;
  if (schema === false) return `${path}: not allowed`;
  if (schema.anyOf) {
    const found = schema.anyOf.map((s) => problem(value, s, path));
    if (found.every((p) => p !== null)) {
      return found.length === 1 ? found[0] : `${path}: matches none of: ${found.join('; ')}`;
    }
  }
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => isType(value, t))) {
      return `${path}: expected ${types.map((t) => NAMES[t] ?? t).join(' or ')}, got ${jsonType(value)}`;
    }
  }
  if (schema.const !== undefined && !equal(value, schema.const)) {
    return `${path}: expected ${JSON.stringify(schema.const)}, got ${JSON.stringify(value)}`;
  }
  if (schema.enum && !schema.enum.some((e) => equal(e, value))) {
    return `${path}: expected one of ${schema.enum.map((e) => JSON.stringify(e)).join(', ')}, got ${JSON.stringify(value)}`;
  }
  if (Array.isArray(value) && schema.items) {
    for (let i = 0; i < value.length; i++) {
      const p = problem(value[i], schema.items, `${path}[${i}]`);
      if (p) return p;
    }
  }
  if (isType(value, 'object')) {
    const properties = schema.properties ?? {};
    const missing = (schema.required ?? []).filter((k) => !Object.hasOwn(value, k));
    if (missing.length) return `${path}: missing ${missing.map((k) => `\`${k}\``).join(', ')}`;
    const extra = schema.additionalProperties;
    const unknown = Object.keys(value).filter((k) => !Object.hasOwn(properties, k));
    if (extra === false && unknown.length) {
      const takes = Object.keys(properties).join(', ') || 'nothing';
      return `${path}: unknown ${unknown.map((k) => `\`${k}\``).join(', ')}; it takes ${takes}`;
    }
    for (const [k, v] of Object.entries(value)) {
      const sub = Object.hasOwn(properties, k) ? properties[k] : typeof extra === 'object' ? extra : undefined;
      const p = problem(v, sub, path === '' ? k : `${path}.${k}`);
      if (p) return p;
    }
  }
  return null;
}
