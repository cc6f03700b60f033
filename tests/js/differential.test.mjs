// The differential generator (differential.mjs) as a test: generated filters, sorts, expands
// and paging by a superuser, a guest and a user, against the server under test and real
// PocketBase over the same data, with every answer compared. Against PocketBase itself
// (SERVER=pocketbase) it checks that the harness is deterministic (two PocketBase servers must
// agree on every answer). DIFF_SEEDS / DIFF_CASES widen it (e.g. DIFF_SEEDS=1-20).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeDiffs, differential } from './differential.mjs';

const seeds = (process.env.DIFF_SEEDS ?? '1').split(',').flatMap((part) => {
  const [lo, hi] = part.split('-').map(Number);
  return hi === undefined ? [lo] : Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
});
const cases = Number(process.env.DIFF_CASES ?? '250');
const kinds = ['pocketbase', process.env.SERVER ?? 'syncbase'];

for (const seed of seeds) {
  test(`seed ${seed}: ${cases} generated requests answer as PocketBase`, async () => {
    const out = await differential({ seed, cases, kinds });
    assert.equal(out.cases, cases);
    // The generated requests must reach both success and error paths to mean anything.
    assert.ok((out.statuses[200] ?? 0) > cases / 2, `statuses ${JSON.stringify(out.statuses)}`);
    assert.ok((out.statuses[400] ?? 0) > 0, `statuses ${JSON.stringify(out.statuses)}`);
    assert.equal(out.diffs.length, 0, `${out.diffs.length} answers differ:\n${describeDiffs(out.diffs, kinds)}`);
  });
}
