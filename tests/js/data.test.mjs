// View collections, request logs, crons, truncate, scaffolds and the SQL console, through the
// official JS SDK. Runs against real PocketBase (`SERVER=pocketbase`) to prove each assertion
// is PocketBase's behaviour, and against Syncbase (single node, and replicating with
// SYNCBASE_JS_SYNC=1) to prove Syncbase matches it.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import PocketBase, { ClientResponseError } from 'pocketbase';
import { startServer, SUPERUSER_EMAIL, SUPERUSER_PASSWORD } from './server.mjs';

const replicating = process.env.SYNCBASE_JS_SYNC === '1' && (process.env.SERVER ?? 'syncbase') === 'syncbase';

let server;
let pb;

before(async () => {
  server = await startServer();
  pb = new PocketBase(server.url);
  pb.autoCancellation(false);
  await pb.collection('_superusers').authWithPassword(SUPERUSER_EMAIL, SUPERUSER_PASSWORD);
});

after(async () => {
  await server?.stop();
});

/** Expects `promise` to reject with a ClientResponseError of `status`; returns the error. */
async function rejects(promise, status) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ClientResponseError, `expected ClientResponseError, got ${err}`);
    assert.equal(err.status, status, `status; body ${JSON.stringify(err.response)}`);
    assert.equal(typeof err.response.message, 'string');
    return err;
  }
  assert.fail(`expected a ${status} rejection, but the request succeeded`);
}

/** Polls `fn` until it returns a truthy value or `ms` pass (PocketBase writes logs every 3 s). */
async function eventually(what, fn, ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100)); // poll interval of the deadline-bounded wait
  }
}

describe('view collections', () => {
  let user;

  before(async () => {
    user = await pb.collection('users').create({
      email: 'viewer@example.com',
      password: 'viewer-password-1',
      passwordConfirm: 'viewer-password-1',
      name: 'Viewer',
    });
    await pb.collections.create({
      name: 'vposts',
      type: 'base',
      listRule: '',
      viewRule: '',
      fields: [
        { name: 'title', type: 'text', required: true },
        { name: 'views', type: 'number' },
        { name: 'author', type: 'relation', collectionId: '_pb_users_auth_', maxSelect: 1 },
      ],
    });
    for (const [title, views] of [['alpha', 5], ['beta', 15], ['gamma', 25]]) {
      await pb.collection('vposts').create({ title, views, author: user.id });
    }
  });

  test('fields are inferred from the query as PocketBase infers them', async () => {
    const view = await pb.collections.create({
      name: 'vstats',
      type: 'view',
      listRule: '',
      viewRule: '',
      viewQuery:
        'SELECT p.id, p.title, p.views AS hits, p.author, count(p.id) AS n, ' +
        'cast(p.views AS text) AS label, u.id AS writer, 1+1 AS two ' +
        'FROM vposts p LEFT JOIN users u ON u.id = p.author GROUP BY p.id',
    });
    assert.equal(view.type, 'view');
    assert.equal(view.createRule, null);
    const types = Object.fromEntries(view.fields.map((f) => [f.name, f.type]));
    assert.deepEqual(types, {
      id: 'text',
      title: 'text',
      hits: 'number',
      author: 'relation',
      n: 'number',
      label: 'text',
      writer: 'relation',
      two: 'json',
    });
    const field = (name) => view.fields.find((f) => f.name === name);
    assert.equal(field('title').required, true, 'a copied field keeps its options');
    assert.equal(field('n').onlyInt, true, 'count() is an integer');
    assert.equal(field('writer').collectionId, '_pb_users_auth_', 'x.id relates to x');
    assert.equal(field('id').primaryKey, true);
  });

  test('list, filter, sort and expand over view records', async () => {
    const anon = new PocketBase(server.url);
    const page = await anon.collection('vstats').getList(1, 10, { filter: 'hits > 10', sort: '-hits' });
    assert.deepEqual(page.items.map((r) => r.title), ['gamma', 'beta']);
    assert.equal(page.totalItems, 2);
    assert.equal(page.items[0].hits, 25);
    assert.equal(page.items[0].n, 1);
    assert.equal(page.items[0].collectionName, 'vstats');
    const one = await pb.collection('vstats').getOne(page.items[1].id, { expand: 'author' });
    assert.equal(one.title, 'beta');
    assert.equal(one.expand.author.id, user.id);
    assert.equal(one.expand.author.name, 'Viewer');
    // A new record in the base collection shows in the view at once.
    await pb.collection('vposts').create({ title: 'delta', views: 35 });
    const all = await anon.collection('vstats').getFullList({ sort: 'title' });
    assert.deepEqual(all.map((r) => r.title), ['alpha', 'beta', 'delta', 'gamma']);
  });

  test('view records are read-only', async () => {
    const [rec] = await pb.collection('vstats').getFullList({ filter: 'title = "alpha"' });
    let err = await rejects(pb.collection('vstats').create({ title: 'x' }), 400);
    assert.equal(err.response.message, 'Unsupported collection type.');
    err = await rejects(pb.collection('vstats').update(rec.id, { title: 'x' }), 400);
    assert.equal(err.response.message, 'Unsupported collection type.');
    await rejects(pb.collection('vstats').delete(rec.id), 400);
    await rejects(pb.collections.truncate('vstats'), 400);
  });

  test('list and view rules apply to view records', async () => {
    await pb.collections.update('vstats', { listRule: 'hits >= 25', viewRule: null });
    const anon = new PocketBase(server.url);
    const page = await anon.collection('vstats').getList(1, 10, { sort: 'title' });
    assert.deepEqual(page.items.map((r) => r.title), ['delta', 'gamma']);
    await rejects(anon.collection('vstats').getOne(page.items[0].id), 403);
  });

  test('bad view queries are refused with PocketBase codes', async () => {
    const create = (viewQuery, extra = {}) =>
      rejects(pb.collections.create({ name: 'vbad', type: 'view', viewQuery, ...extra }), 400);
    let err = await create('SELECT title FROM vposts');
    assert.equal(err.response.data.viewQuery.code, 'validation_invalid_view_query');
    assert.equal(err.response.data.fields.code, 'validation_missing_primary_key');
    err = await create('SELECT * FROM vposts');
    assert.equal(err.response.data.viewQuery.code, 'validation_invalid_view_query');
    assert.match(err.response.data.viewQuery.message, /wildcard columns/);
    err = await create('SELECT id, nope FROM vposts');
    assert.match(err.response.data.viewQuery.message, /no such column: nope/);
    err = await create('SELECT id FROM vposts; DELETE FROM vposts');
    assert.match(err.response.data.viewQuery.message, /multiple statements/);
    err = await create('');
    assert.equal(err.response.data.viewQuery.code, 'validation_required');
    err = await create('SELECT id FROM vposts', { createRule: '', indexes: ['CREATE INDEX i ON vbad (id)'] });
    assert.equal(err.response.data.createRule.code, 'validation_nil');
    assert.equal(err.response.data.indexes.code, 'validation_indexes_not_supported');
    // Nothing was created along the way.
    await rejects(pb.collections.getOne('vbad'), 404);
    assert.equal((await pb.collection('vposts').getFullList()).length, 4);
  });

  test('a dry run previews a query without creating anything', async () => {
    const dry = (query) => pb.send('/api/collections/meta/dry-run-view', { method: 'POST', body: { query } });
    const preview = await dry('SELECT id, title, views FROM vposts ORDER BY views LIMIT 2');
    assert.deepEqual(preview.fields.map((f) => [f.name, f.type]), [['id', 'text'], ['title', 'text'], ['views', 'number']]);
    assert.deepEqual(preview.sample.map((r) => r.title), ['alpha', 'beta']);
    assert.match(preview.sample[0].collectionName, /^temp_view_/);
    const err = await rejects(dry('SELECT title FROM vposts'), 400);
    assert.match(err.response.message, /^Invalid view query\. Raw error: \nmissing required id column/);
    const names = (await pb.collections.getFullList()).map((c) => c.name);
    assert.ok(!names.some((n) => n.startsWith('temp_view_')), 'nothing was created');
  });

  test('an import may list a view before the collection it reads', async () => {
    await pb.collections.import([
      { name: 'iview', type: 'view', listRule: '', viewQuery: 'SELECT id, name FROM ibase' },
      { name: 'ibase', type: 'base', fields: [{ name: 'name', type: 'text' }] },
    ]);
    const view = await pb.collections.getOne('iview');
    assert.deepEqual(view.fields.map((f) => [f.name, f.type]), [['id', 'text'], ['name', 'text']]);
    await pb.collection('ibase').create({ name: 'imported' });
    const rows = await new PocketBase(server.url).collection('iview').getFullList();
    assert.deepEqual(rows.map((r) => r.name), ['imported']);
  });

  test('a base collection cannot relate to a view; a view a collection depends on blocks its delete', async () => {
    const view = await pb.collections.getOne('vstats');
    const err = await rejects(
      pb.collections.create({ name: 'vrel', fields: [{ name: 'r', type: 'relation', collectionId: view.id }] }),
      400,
    );
    assert.equal(err.response.data.fields[1].collectionId.code, 'validation_relation_field_non_view_base_collection');
    await rejects(pb.collections.delete('vposts'), 400);
    assert.ok(await pb.collections.getOne('vposts'), 'the collection is still there');
  });
});

describe('truncate and scaffolds', () => {
  test('truncate deletes every record, cascades included', async () => {
    const parents = await pb.collections.create({ name: 'tparents', fields: [{ name: 'n', type: 'number' }] });
    await pb.collections.create({
      name: 'tkids',
      fields: [{ name: 'p', type: 'relation', collectionId: parents.id, maxSelect: 1, cascadeDelete: true }],
    });
    for (let n = 0; n < 12; n++) {
      const p = await pb.collection('tparents').create({ n });
      await pb.collection('tkids').create({ p: p.id });
    }
    assert.equal(await pb.collections.truncate('tparents'), true);
    assert.equal((await pb.collection('tparents').getList(1, 1)).totalItems, 0);
    assert.equal((await pb.collection('tkids').getList(1, 1)).totalItems, 0, 'cascade');
    await rejects(pb.collections.truncate('nosuchcollection'), 404);
    await rejects(new PocketBase(server.url).collections.truncate('tparents'), 401);
  });

  test('a required reference makes truncate fail and keep everything', async () => {
    const parents = await pb.collections.create({ name: 'rparents', fields: [{ name: 'n', type: 'number' }] });
    await pb.collections.create({
      name: 'rkids',
      fields: [{ name: 'p', type: 'relation', collectionId: parents.id, maxSelect: 1, required: true }],
    });
    const p = await pb.collection('rparents').create({ n: 1 });
    await pb.collection('rparents').create({ n: 2 });
    await pb.collection('rkids').create({ p: p.id });
    const err = await rejects(pb.collections.truncate('rparents'), 400);
    assert.match(err.response.message, /Failed to truncate collection/);
    assert.equal((await pb.collection('rparents').getList(1, 1)).totalItems, 2);
  });

  test('the last superuser survives a truncate of _superusers', async () => {
    const err = await rejects(pb.collections.truncate('_superusers'), 400);
    assert.match(err.response.message, /Failed to truncate collection/);
    assert.equal((await pb.collection('_superusers').getList(1, 1)).totalItems, 1);
    const [me] = await pb.collection('_superusers').getFullList();
    await rejects(pb.collection('_superusers').delete(me.id), 400);
  });

  test('scaffolds describe a new collection of each type', async () => {
    const s = await pb.collections.getScaffolds();
    assert.deepEqual(Object.keys(s).sort(), ['auth', 'base', 'view']);
    assert.equal(s.base.type, 'base');
    assert.equal(s.base.id, '');
    assert.deepEqual(s.base.fields.map((f) => f.name), ['id']);
    assert.equal(s.auth.type, 'auth');
    assert.deepEqual(
      s.auth.fields.map((f) => f.name),
      ['id', 'password', 'tokenKey', 'email', 'emailVisibility', 'verified'],
    );
    assert.equal(s.auth.passwordAuth.enabled, true);
    assert.equal(s.auth.indexes.length, 2);
    assert.equal(s.view.type, 'view');
    assert.equal(s.view.viewQuery, '');
    assert.deepEqual(s.view.fields, []);
  });
});

describe('request logs', () => {
  test('requests show up in the logs, with their outcome', async () => {
    const marker = `marker${Date.now()}`;
    await pb.health.check({ query: { m: marker } });
    await rejects(pb.collection(`missing${marker}`).getList(1, 1), 404);
    const ok = await eventually('the health check in the logs', async () => {
      const page = await pb.logs.getList(1, 10, { filter: `data.url ~ "${marker}" && data.status = 200` });
      return page.items[0];
    });
    assert.equal(ok.level, 0);
    assert.equal(ok.data.method, 'GET');
    assert.equal(ok.data.type, 'request');
    assert.equal(typeof ok.data.execTime, 'number');
    assert.equal(ok.data.remoteIP, '127.0.0.1', 'logs.logIP is on by default');
    assert.match(ok.message, new RegExp(`^GET /api/health\\?m=${marker}`));
    const failed = await eventually('the failed request in the logs', async () => {
      const page = await pb.logs.getList(1, 10, { filter: `data.url ~ "missing${marker}"` });
      return page.items[0];
    });
    assert.equal(failed.level, 8, 'errors are logged at ERROR');
    assert.equal(failed.data.status, 404);
    assert.equal(failed.data.error, 'Missing collection context.');
    assert.equal(failed.data.auth, '_superusers');
    const same = await pb.logs.getOne(failed.id);
    assert.equal(same.message, failed.message);
    await rejects(pb.logs.getOne('nosuchlogentry0'), 404);
    const stats = await pb.logs.getStats({ filter: `data.url ~ "${marker}"` });
    assert.equal(stats.reduce((n, s) => n + s.total, 0), 2);
    assert.match(stats[0].date, /^\d{4}-\d{2}-\d{2} \d{2}:00:00\.000Z$/);
  });

  test('logs are for superusers only and their own reads are not logged', async () => {
    await rejects(new PocketBase(server.url).logs.getList(1, 1), 401);
    await pb.logs.getList(1, 1, { filter: 'data.url ~ "selfread"' });
    const marker = `after${Date.now()}`;
    await pb.health.check({ query: { m: marker } });
    await eventually('a later request in the logs', async () => {
      return (await pb.logs.getList(1, 1, { filter: `data.url ~ "${marker}"` })).totalItems;
    });
    const self = await pb.logs.getList(1, 1, { filter: 'data.url ~ "selfread"' });
    assert.equal(self.totalItems, 0);
  });

  test('logs.maxDays = 0 stops logging', async () => {
    await pb.settings.update({ logs: { maxDays: 0 } });
    const marker = `off${Date.now()}`;
    await pb.health.check({ query: { m: marker } });
    await pb.settings.update({ logs: { maxDays: 5 } });
    const on = `on${Date.now()}`;
    await pb.health.check({ query: { m: on } });
    await eventually('the request after logging was turned back on', async () => {
      return (await pb.logs.getList(1, 1, { filter: `data.url ~ "${on}"` })).totalItems;
    });
    assert.equal((await pb.logs.getList(1, 1, { filter: `data.url ~ "${marker}"` })).totalItems, 0);
  });
});

describe('crons', () => {
  test('the log cleanup job is listed and runs on demand', async () => {
    const jobs = await pb.crons.getFullList();
    const cleanup = jobs.find((j) => j.id === '__pbLogsCleanup__');
    assert.deepEqual(cleanup, { id: '__pbLogsCleanup__', expression: '0 */6 * * *' });
    assert.ok(jobs.some((j) => j.id === '__pbDBOptimize__'));
    assert.equal(await pb.crons.run('__pbLogsCleanup__'), true);
    const err = await rejects(pb.crons.run('nosuchjob'), 404);
    assert.equal(err.response.message, 'Missing or invalid cron job.');
    await rejects(new PocketBase(server.url).crons.getFullList(), 401);
  });
});

describe('SQL console', () => {
  before(async () => {
    await pb.collections.create({ name: 'sqlrows', fields: [{ name: 'n', type: 'number' }, { name: 's', type: 'text' }] });
    for (const n of [1, 2, 3]) await pb.collection('sqlrows').create({ n, s: `r${n}` });
  });

  test('reads return columns and rows as text', async () => {
    const r = await pb.sql.run('SELECT s, n, NULL AS z, 1.5 AS f FROM sqlrows ORDER BY n');
    assert.deepEqual(r.columns.map((c) => [c.name, c.type]), [['s', 'TEXT'], ['n', 'NUMERIC'], ['z', ''], ['f', '']]);
    assert.deepEqual(r.rows, [['r1', '1', null, '1.5'], ['r2', '2', null, '1.5'], ['r3', '3', null, '1.5']]);
    assert.equal(r.affectedRows, 0);
    assert.equal(typeof r.execTime, 'number');
    const count = await pb.sql.run('select count(*) from sqlrows; ');
    assert.deepEqual(count.rows, [['3']]);
  });

  test('writes run on a single node and are refused on a replicating one', async () => {
    if (replicating) {
      const err = await rejects(pb.sql.run('UPDATE sqlrows SET n = n + 10'), 400);
      assert.match(err.response.message, /read-only on a replicating node/);
      const r = await pb.sql.run('SELECT sum(n) FROM sqlrows');
      assert.deepEqual(r.rows, [['6']], 'nothing was written');
      return;
    }
    const r = await pb.sql.run('UPDATE sqlrows SET n = n + 10');
    assert.equal(r.affectedRows, 3);
    assert.deepEqual(r.rows, []);
    const rec = await pb.collection('sqlrows').getFirstListItem('s = "r1"');
    assert.equal(rec.n, 11);
  });

  test('bad input gets a clear 400', async () => {
    let err = await rejects(pb.sql.run(''), 400);
    assert.equal(err.response.data.query.code, 'validation_required');
    err = await rejects(pb.sql.run(`SELECT '${'x'.repeat(5001)}'`), 400);
    assert.equal(err.response.data.query.code, 'validation_length_too_long');
    err = await rejects(pb.sql.run('SELECT * FROM nosuchtable'), 400);
    assert.match(err.response.message, /^Failed to execute query\. Raw error:\n.*no such table: nosuchtable/);
    await rejects(new PocketBase(server.url).sql.run('SELECT 1'), 401);
  });
});
