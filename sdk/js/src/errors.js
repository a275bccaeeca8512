// The errors a tool or role throws, and what the host sees of them. Throw
// InvalidArguments, Denied or Failed from a tool and the caller gets that
// tool error with your message; anything else thrown becomes a `failed`
// tool error naming it, never a trap.

export class ToolError extends Error {
  /** The case of the WIT `tool-error` variant this maps to. */
  static kind = 'failed';

  constructor(message) {
    super(String(message));
    this.name = this.constructor.name;
  }

  get kind() {
    return this.constructor.kind;
  }
}

/** The arguments do not fit the tool (the kit throws it when they do not
 * match the tool's schema). */
export class InvalidArguments extends ToolError {
  static kind = 'invalid-arguments';
}

/** No tool of that name in this plugin. */
export class UnknownTool extends ToolError {
  static kind = 'unknown-tool';
}

/** The host's policy refused something the tool needed; the host
 * interfaces throw it for you. */
export class Denied extends ToolError {
  static kind = 'denied';
}

/** The tool ran and failed. */
export class Failed extends ToolError {
  static kind = 'failed';
}

/** A role's task cannot be worked as given (the role's `invalid-task`). */
export class InvalidTask extends Error {
  constructor(message) {
    super(String(message));
    this.name = 'InvalidTask';
  }
}

/** `error` as a `failed` tool error naming it, unless it is a ToolError. */
export function asToolError(where, error) {
  if (error instanceof ToolError) return error;
  // The engine throws some failures as bare strings ("out of memory").
  if (typeof error === 'string') return new Failed(`${where}: ${error}`);
  return new Failed(`${where}: ${describe(error)}`);
}

/** "Name: message" of anything thrown, without calling code of its own
 * that could throw again (a getter, a toString). */
export function describe(error) {
  try {
    if (error === null || (typeof error !== 'object' && typeof error !== 'function')) {
      return `${typeof error}: ${String(error)}`;
    }
    const name = typeof error.name === 'string' ? error.name : 'Error';
    const message = typeof error.message === 'string' ? error.message : '';
    return message ? `${name}: ${message}` : name;
  } catch {
    return 'a value that cannot be described';
  }
}
