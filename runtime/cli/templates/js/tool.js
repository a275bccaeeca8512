// A warden tool plugin: `greet`.
//
// Each tool(name, { description, schema }, handler) is a tool. `schema` is
// the JSON Schema of its arguments: callers and models see it, and every
// call's arguments are checked against it before the handler runs. What
// the handler returns is the result, as JSON. Throwing InvalidArguments,
// Denied or Failed gives the caller that error; anything else thrown comes
// back as a `failed` tool error, never a crash.
//
// The build runs this module once and snapshots it: read files, the
// environment or the clock inside handlers, not at the top level.
import { InvalidArguments, log, tool } from 'warden-plugin';

tool(
  'greet',
  {
    description: 'Greets someone by name',
    schema: {
      type: 'object',
      properties: {
        name: { type: 'string', description: 'Who to greet' },
        excited: { type: 'boolean', description: 'End with an exclamation mark instead of a full stop' },
      },
      required: ['name'],
      additionalProperties: false,
    },
  },
  ({ name, excited = false }) => {
    if (!name) {
      // Comes back to the caller as an `invalid-arguments` tool error.
      throw new InvalidArguments('`name` is empty');
    }
    log.info(`greeting ${name}`);
    return { message: `Hello, ${name}${excited ? '!' : '.'}` };
  },
);
