// The `warden:plugin/tool` export (`tool`), for the entry module the build
// writes. Nothing a tool throws leaves here but a tool error.
import { asToolError } from './errors.js';

const KINDS = ['invalid-arguments', 'unknown-tool', 'denied', 'failed'];
import { call, listTools } from './index.js';

export const tool = {
  listTools() {
    return listTools().map(({ name, description, inputSchema }) => ({
      name,
      description,
      inputSchema: JSON.stringify(inputSchema),
    }));
  },
  callTool(name, args) {
    return call(name, args).catch((e) => {
      throw toolError(name, e);
    });
  },
};

/** The WIT tool-error for what was thrown; never throws itself. */
function toolError(name, e) {
  try {
    const error = asToolError(name, e);
    const kind = KINDS.includes(error.kind) ? error.kind : 'failed';
    return { tag: kind, val: String(error.message) };
  } catch {
    return { tag: 'failed', val: `${name}: it threw something that cannot be described` };
  }
}
