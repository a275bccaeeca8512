// Tools that try what a hostile or buggy JavaScript plugin would, added to a
// project `warden plugin new --lang js` wrote (runtime/cli/tests/all/kits.rs).
import { Denied, callKey, fs, http, tool } from 'warden-plugin';
import { getEnvironment } from 'wasi:cli/environment@0.2.12';

const args = (properties) => ({ type: 'object', properties, required: Object.keys(properties), additionalProperties: false });

tool('read', { description: 'Reads a file', schema: args({ path: { type: 'string' } }) }, ({ path }) => fs.readText(path));

tool('write', { description: 'Writes a file', schema: args({ path: { type: 'string' }, text: { type: 'string' } }) }, ({ path, text }) =>
  fs.write(path, text),
);

tool(
  'fetch',
  {
    description: 'Fetches a URL without following redirects (a POST of `body` if given)',
    schema: { type: 'object', properties: { url: { type: 'string' }, body: { type: 'string' } }, required: ['url'] },
  },
  ({ url, body }) => {
  const r = body === undefined ? http.get(url) : http.post(url, body);
  return { status: r.status, location: r.header('location') ?? null, body: r.text() };
  },
);

tool('spin', { description: 'Never returns' }, () => {
  for (;;) {}
});

tool('hog', { description: 'Holds `mib` MiB at once', schema: args({ mib: { type: 'integer' } }) }, ({ mib }) => {
  const blocks = [];
  for (let i = 0; i < mib; i++) blocks.push(new Uint8Array(1024 * 1024).fill(1));
  return blocks.length;
});

tool('environ', { description: 'The environment variables the plugin sees' }, () =>
  getEnvironment().map(([k]) => k).concat(callKey() === undefined ? [] : ['(call key)']).sort(),
);

tool('crash', { description: 'Fails the way it is told', schema: args({ how: { type: 'string' } }) }, async ({ how }) => {
  if (how === 'zero') return null.zero;
  if (how === 'set') return { n: 1n };
  if (how === 'exit') {
    await null;
    throw new Error('after an await');
  }
  if (how === 'recurse') {
    const down = (n) => down(n + 1);
    return down(0);
  }
  throw new Denied(`refused ${how}`);
});
