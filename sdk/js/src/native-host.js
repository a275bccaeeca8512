// What the host's imports are natively: logging goes to stderr (info and
// above, or all of it with WARDEN_LOG=trace|debug), the environment is the
// process's, and everything else refuses, which the kit reports as
// "only available inside warden".
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

function refuse() {
  const e = new Error('not inside warden');
  e.nativeStub = true;
  throw e;
}

export function log(level, message) {
  const shown = LEVELS.includes(process.env.WARDEN_LOG) ? process.env.WARDEN_LOG : 'info';
  if (LEVELS.indexOf(level) >= LEVELS.indexOf(shown)) {
    process.stderr.write(`[${level}] ${message}\n`);
  }
}

export function getDirectories() {
  refuse();
}

export function getEnvironment() {
  return Object.entries(process.env);
}

export const complete = refuse;
export const handle = refuse;
export const store = refuse;
export const search = refuse;
export const get = refuse;
export const update = refuse;
export const find = refuse;
export const listTools = refuse;
export const callTool = refuse;
export { refuse as delete, refuse as run };

export class Fields {
  static fromList() {
    refuse();
  }
}
export class OutgoingRequest {
  constructor() {
    refuse();
  }
}
export class OutgoingBody {
  static finish() {
    refuse();
  }
}
