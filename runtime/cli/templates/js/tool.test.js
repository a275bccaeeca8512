// The tools, natively: `npm test` (node --import warden-plugin/native --test).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { InvalidArguments, call } from 'warden-plugin';
import './app.js';

test('greets', async () => {
  assert.deepEqual(JSON.parse(await call('greet', '{"name": "Ada", "excited": true}')), { message: 'Hello, Ada!' });
});

test('refuses an empty name', async () => {
  await assert.rejects(call('greet', '{"name": ""}'), InvalidArguments);
});

test('checks the arguments types', async () => {
  await assert.rejects(call('greet', '{"name": 7}'), /name: expected a string/);
});
