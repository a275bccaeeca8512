// A role's tools: the tool plugins the operator gave the run, called
// through the host (the `tools` interface; role plugins only). A tool's
// error is thrown as the kit's ToolError of the same kind.

import { listTools, callTool } from 'warden:plugin/tools@0.1.0';

import { Denied, Failed, InvalidArguments, UnknownTool } from './errors.js';
import { inside } from './host.js';

const KINDS = { 'invalid-arguments': InvalidArguments, 'unknown-tool': UnknownTool, denied: Denied, failed: Failed };
const errors = (tag, message) => new (KINDS[tag] ?? Failed)(message);

/** The tools this role may call: `{ name, description, inputSchema }`. */
export function list() {
  return inside('tools', () => listTools(), errors).map((t) => ({
    name: t.name,
    description: t.description,
    inputSchema: JSON.parse(t.inputSchema),
  }));
}

/** Calls tool `name` (qualified, `plugin.tool`) with `args`; returns its
 * parsed JSON result. */
export function call(name, args = {}) {
  return JSON.parse(inside('tools', () => callTool(name, JSON.stringify(args)), errors));
}
