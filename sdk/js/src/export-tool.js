// The `warden:plugin/tool` export (`tool`), for the entry module the build
// writes. Nothing a tool throws leaves here but a tool error.
import { asToolError } from './errors.js';
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
      const error = asToolError(name, e);
      throw { tag: error.kind, val: error.message };
    });
  },
};
