// The role's own logic, natively: `npm test`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { prompt } from './app.js';

test('the prompt names the task and what came before', () => {
  const text = prompt({
    id: 'sum',
    goal: 'Ship the parser',
    instructions: 'Summarise the work',
    input: null,
    dependencies: [{ taskId: 'code', role: 'coder', summary: 'wrote parser.js', artifacts: [] }],
  });
  assert.ok(text.includes('Summarise the work'), text);
  assert.ok(text.includes('wrote parser.js'), text);
});
