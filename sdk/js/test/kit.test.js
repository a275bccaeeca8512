// The JavaScript kit, natively (`node --import ./src/native.js --test test/`,
// run by `scripts/dev test`): schemas checked, results, errors, roles and
// the manifest section. The same kit built into a component is tested
// through warden in runtime/cli/tests/all/kits.rs.
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { build, customSection } from '../bin/warden-plugin.js';
import * as warden from '../src/index.js';
import { problem } from '../src/schema.js';

const kindOf = async (promise) => {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof warden.ToolError, `${e}`);
    return [e.kind, e.message];
  }
  return null;
};

test('values are checked against the schema, naming the path', () => {
  const schema = {
    type: 'object',
    properties: {
      n: { type: 'integer' },
      tags: { type: 'array', items: { type: 'string' } },
      mode: { enum: ['a', 'b'] },
      maybe: { anyOf: [{ type: 'string' }, { type: 'null' }] },
      point: { type: 'object', properties: { x: { type: 'number' } }, required: ['x'], additionalProperties: false },
    },
    required: ['n'],
    additionalProperties: false,
  };
  assert.equal(problem({ n: 1, tags: ['x'], mode: 'a', maybe: null, point: { x: 1.5 } }, schema, ''), null);
  for (const [value, message] of [
    [{}, ': missing `n`'],
    [{ n: 1.5 }, 'n: expected an integer, got a number'],
    [{ n: '1' }, 'n: expected an integer, got a string'],
    [{ n: 1, tags: ['x', 2] }, 'tags[1]: expected a string, got an integer'],
    [{ n: 1, mode: 'c' }, 'mode: expected one of "a", "b", got "c"'],
    [{ n: 1, maybe: 3 }, 'maybe: matches none of: maybe: expected a string, got an integer; maybe: expected null, got an integer'],
    [{ n: 1, point: {} }, 'point: missing `x`'],
    [{ n: 1, extra: true }, ': unknown `extra`; it takes n, tags, mode, maybe, point'],
  ]) {
    assert.equal(problem(value, schema, ''), message);
  }
});

test('a tool is listed and called as the host would', async () => {
  warden.tool(
    'area',
    {
      description: 'The area of a rectangle',
      schema: { type: 'object', properties: { w: { type: 'number' }, h: { type: 'number' } }, required: ['w', 'h'] },
    },
    async ({ w, h }) => w * h,
  );
  const listed = warden.listTools().find((t) => t.name === 'area');
  assert.equal(listed.description, 'The area of a rectangle');
  assert.deepEqual(listed.inputSchema.required, ['w', 'h']);
  assert.equal(await warden.call('area', '{"w": 2, "h": 3.5}'), '7');
});

test('bad declarations are refused when declared', () => {
  assert.throws(() => warden.tool('Bad Name', { description: 'd' }, () => 1), /tool name "Bad Name"/);
  assert.throws(() => warden.tool('nodesc', {}, () => 1), /give it a description/);
  assert.throws(() => warden.tool('notobj', { description: 'd', schema: { type: 'string' } }, () => 1), /its type is "object"/);
  warden.tool('once', { description: 'd' }, () => 1);
  assert.throws(() => warden.tool('once', { description: 'd' }, () => 1), /two tools are named "once"/);
});

test('every failure is a tool error of its kind', async () => {
  warden.tool(
    'work',
    { description: 'Works, or not', schema: { type: 'object', properties: { how: { type: 'string' } }, required: ['how'] } },
    async ({ how }) => {
      if (how === 'denied') throw new warden.Denied('no');
      if (how === 'null') return null.x;
      if (how === 'bigint') return 1n;
      if (how === 'deep') {
        const f = (n) => f(n + 1);
        return f(0);
      }
      if (how === 'string') throw 'a string';
      return how;
    },
  );
  assert.deepEqual(await kindOf(warden.call('work', '{"how": "denied"}')), ['denied', 'no']);
  assert.deepEqual(await kindOf(warden.call('work', '{"how": "null"}')), [
    'failed',
    "work: TypeError: Cannot read properties of null (reading 'x')",
  ]);
  assert.equal((await kindOf(warden.call('work', '{"how": "bigint"}')))[0], 'failed');
  assert.match((await kindOf(warden.call('work', '{"how": "deep"}')))[1], /^work: RangeError/);
  assert.deepEqual(await kindOf(warden.call('work', '{"how": "string"}')), ['failed', 'work: a string']);
  assert.equal((await kindOf(warden.call('work', 'not json')))[0], 'invalid-arguments');
  assert.deepEqual(await kindOf(warden.call('work', '[]')), [
    'invalid-arguments',
    'work: the arguments must be a JSON object, got an array',
  ]);
  assert.deepEqual(await kindOf(warden.call('work', '{}')), ['invalid-arguments', 'work: missing `how`']);
  assert.deepEqual(await kindOf(warden.call('nope')), ['unknown-tool', "no tool 'nope' in this plugin; it has: area, once, work"]);
  assert.equal(await warden.call('work', '{"how": "fine"}'), '"fine"');
});

test('the host interfaces say they need warden natively', () => {
  for (const work of [
    () => warden.http.get('https://example.com/'),
    () => warden.llm.ask('hi'),
    () => warden.memory.store('n', 'c'),
  ]) {
    assert.throws(work, (e) => e instanceof warden.Failed && /only available inside warden/.test(e.message));
  }
  for (const [url, message] of [
    ['ftp://x/', /scheme "ftp" is not supported/],
    ['nope', /not a URL/],
  ]) {
    assert.throws(() => warden.http.get(url), (e) => e instanceof warden.InvalidArguments && message.test(e.message));
  }
  assert.throws(() => warden.http.request('brew', 'http://h/'), /method "BREW"/);
  assert.equal(warden.callKey(), process.env.WARDEN_CALL_KEY);
});

test('a role is declared once, and its brief names the task', () => {
  assert.throws(() => warden.role({ name: 'Sum' }, () => 's'), /role name "Sum"/);
  warden.role({ name: 'sum', description: 'd' }, () => 's');
  assert.throws(() => warden.role({ name: 'other' }, () => 's'), /a plugin has one role/);
  const brief = warden.brief({
    id: 't',
    goal: 'G',
    instructions: 'I',
    input: { k: 1 },
    dependencies: [{ taskId: 'a', role: 'coder', summary: 'wrote x', artifacts: ['x.py'] }],
    attempt: 2,
    lastError: 'boom',
  });
  for (const part of ['Goal of the run: G', 'Your task (t): I', 'Input: {"k":1}', 'by coder (a): wrote x', 'Files: x.py', 'Attempt 1 failed with: boom']) {
    assert.ok(brief.includes(part), part);
  }
});

test('the manifest section is a wasm custom section', () => {
  const section = customSection('warden:manifest', Buffer.alloc(200, 'x'));
  assert.deepEqual([...section.subarray(0, 4)], [0x00, 0xd8, 0x01, 0x0f]);
  assert.equal(section.subarray(4, 19).toString(), 'warden:manifest');
  assert.equal(section.length, 19 + 200);
});

test('a project without a usable manifest is refused', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kit-'));
  await assert.rejects(build(dir), /cannot read .*warden.toml/);
  await writeFile(join(dir, 'warden.toml'), 'name = "x"\nkind = "widget"\n');
  await assert.rejects(build(dir), /kind "widget"/);
  await writeFile(join(dir, 'warden.toml'), 'name = "x"\nkind = "tool"\n');
  await assert.rejects(build(dir), /no app.js/);
});

test('what JSON.stringify would quietly change is refused as a result', async () => {
  warden.tool(
    'odd',
    { description: 'Returns odd things', schema: { type: 'object', properties: { what: { type: 'string' } } } },
    ({ what }) => ({ nan: { n: NaN }, map: new Map(), fn: () => 1, sym: Symbol('s') })[what],
  );
  for (const [what, message] of [
    ['nan', 'odd: the result is not JSON: "n" is NaN'],
    ['map', 'odd: the result is not JSON: it is a Map; use an object or an array'],
    ['fn', 'odd: the result is not JSON: it is a function'],
    ['sym', 'odd: the result is not JSON: it is a symbol'],
  ]) {
    assert.deepEqual(await kindOf(warden.call('odd', JSON.stringify({ what }))), ['failed', message]);
  }
  assert.throws(
    () => warden.tool('bigschema', { description: 'd', schema: { type: 'object', default: 1n } }, () => 1),
    /its schema is not JSON/,
  );
});

test('the exports turn anything thrown into an error of the interface', async () => {
  const { tool } = await import('../src/export-tool.js');
  class RateLimited extends warden.ToolError {
    static kind = 'rate-limited';
  }
  warden.tool('odd-kind', { description: 'd' }, () => {
    throw new RateLimited('slow down');
  });
  warden.tool('hostile', { description: 'd' }, () => {
    throw Object.create(null, { name: { get: () => { throw new Error('no'); } } });
  });
  await assert.rejects(tool.callTool('odd-kind', '{}'), (e) => e.tag === 'failed' && e.val === 'slow down');
  await assert.rejects(tool.callTool('hostile', '{}'), (e) => e.tag === 'failed' && /hostile: /.test(e.val));
  await assert.rejects(tool.callTool('nope', '{}'), (e) => e.tag === 'unknown-tool');

  const { roleError } = await import('../src/export-role.js');
  assert.deepEqual(roleError(new warden.InvalidTask('no goal')), { tag: 'invalid-task', val: 'no goal' });
  assert.deepEqual(roleError(new warden.Denied('not granted')), { tag: 'denied', val: 'not granted' });
  assert.deepEqual(roleError(Symbol('s')), { tag: 'failed', val: 'symbol: Symbol(s)' });
  assert.deepEqual(roleError(new RangeError('deep')), { tag: 'failed', val: 'RangeError: deep' });
});

test('a role outcome is checked before the host reads it', async () => {
  const { role } = await import('../src/export-role.js');
  const task = {
    id: 't',
    goal: 'g',
    instructions: 'i',
    input: 'null',
    context: { dependencies: [], memories: [], roles: [], attempt: 1, lastError: undefined },
  };
  // The role declared by an earlier test returns 's'.
  assert.deepEqual(await role.run(task), { summary: 's', output: 'null', artifacts: [], followUps: [] });
  assert.throws(() => warden.role({ name: 'x', tools: 'fs' }, () => 's'), /`tools` is a list of plugin names/);
});

test('the schema check reads only own keys and compares JSON by value', () => {
  const schema = {
    type: 'object',
    properties: { mode: { enum: [{ a: 1, b: 2 }] }, n: { type: 'number' } },
    additionalProperties: false,
  };
  assert.equal(problem({ mode: { b: 2, a: 1 } }, schema, ''), null);
  assert.equal(problem(JSON.parse('{"constructor": 1}'), schema, ''), ': unknown `constructor`; it takes mode, n');
  assert.equal(problem({ n: Infinity }, schema, ''), 'n: expected a number, got Infinity');
  assert.equal(problem({}, { type: 'object', required: ['toString'] }, ''), ': missing `toString`');
});
