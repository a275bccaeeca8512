// The console of `warden exec js`, formatting values the way node's does
// for the common cases: strings as they are, everything else inspected.
(() => {
  const write = globalThis.__warden_write;
  delete globalThis.__warden_write;

  const MAX_DEPTH = 2;
  const MAX_ITEMS = 100;

  const quote = (s) => `'${s.replace(/[\\']/g, "\\$&").replace(/\n/g, "\\n")}'`;
  const key = (k) => (/^[A-Za-z_$][\w$]*$/.test(k) ? k : quote(k));

  function inspect(value, depth, seen) {
    switch (typeof value) {
      case "string":
        return depth === 0 ? value : quote(value);
      case "number":
        return Object.is(value, -0) ? "-0" : String(value);
      case "bigint":
        return `${value}n`;
      case "undefined":
      case "boolean":
        return String(value);
      case "symbol":
        return value.toString();
      case "function":
        return `[Function: ${value.name || "(anonymous)"}]`;
    }
    if (value === null) return "null";
    if (seen.has(value)) return "[Circular]";
    if (value instanceof Error) {
      return value.stack ? `${value.name}: ${value.message}\n${value.stack}`.trimEnd()
        : `${value.name}: ${value.message}`;
    }
    if (value instanceof Date) return value.toISOString();
    if (value instanceof RegExp) return String(value);
    if (depth > MAX_DEPTH) return Array.isArray(value) ? "[Array]" : "[Object]";
    seen.add(value);
    try {
      const inner = (v) => inspect(v, depth + 1, seen);
      if (Array.isArray(value) || ArrayBuffer.isView(value)) {
        const items = Array.prototype.slice.call(value, 0, MAX_ITEMS).map(inner);
        if (value.length > MAX_ITEMS) items.push(`... ${value.length - MAX_ITEMS} more items`);
        const prefix = Array.isArray(value) ? "" : `${value.constructor.name}(${value.length}) `;
        return items.length ? `${prefix}[ ${items.join(", ")} ]` : `${prefix}[]`;
      }
      if (value instanceof Map) {
        const items = [...value].slice(0, MAX_ITEMS).map(([k, v]) => `${inner(k)} => ${inner(v)}`);
        return `Map(${value.size}) { ${items.join(", ")} }`;
      }
      if (value instanceof Set) {
        const items = [...value].slice(0, MAX_ITEMS).map(inner);
        return `Set(${value.size}) { ${items.join(", ")} }`;
      }
      const keys = Object.keys(value);
      const items = keys.slice(0, MAX_ITEMS).map((k) => `${key(k)}: ${inner(value[k])}`);
      if (keys.length > MAX_ITEMS) items.push(`... ${keys.length - MAX_ITEMS} more items`);
      const name = value.constructor && value.constructor !== Object ? `${value.constructor.name} ` : "";
      return items.length ? `${name}{ ${items.join(", ")} }` : `${name}{}`;
    } finally {
      seen.delete(value);
    }
  }

  const format = (args) => args.map((a) => inspect(a, 0, new Set())).join(" ") + "\n";
  const stdout = (...args) => write(1, format(args));
  const stderr = (...args) => write(2, format(args));
  globalThis.console = {
    log: stdout,
    info: stdout,
    debug: stdout,
    warn: stderr,
    error: stderr,
    trace: stderr,
  };
})();
