// PocketBase parity cases from issue 17, through the official JS SDK. Run against real
// PocketBase (`SERVER=pocketbase node --test parity.test.mjs`) to prove each assertion is what
// PocketBase does, then against Syncbase (the default), and a replicating Syncbase node
// (`SYNCBASE_JS_SYNC=1`), to prove Syncbase matches it.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import PocketBase, { BaseAuthStore, ClientResponseError } from 'pocketbase';
import { startServer, SUPERUSER_EMAIL, SUPERUSER_PASSWORD } from './server.mjs';

const PASSWORD = 'users-password-123';

let server;
let su;
let guest;
let u1;

function client() {
  const pb = new PocketBase(server.url, new BaseAuthStore());
  pb.autoCancellation(false);
  return pb;
}

before(async () => {
  server = await startServer();
  su = client();
  guest = client();
  u1 = client();
  await su.collection('_superusers').authWithPassword(SUPERUSER_EMAIL, SUPERUSER_PASSWORD);
});

after(async () => {
  await server?.stop();
});

/** A test whose unexpected ClientResponseError names the request and the answer. */
function it(name, fn) {
  return test(name, async (t) => {
    try {
      await fn(t);
    } catch (err) {
      if (!(err instanceof ClientResponseError)) throw err;
      const url = decodeURIComponent(err.url.replace(server.url, ''));
      throw new Error(`${url} -> ${err.status} ${JSON.stringify(err.response)}`, { cause: err });
    }
  });
}

/** Expects `promise` to fail with `status`; returns the error body. */
async function rejects(promise, status) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ClientResponseError, `expected ClientResponseError, got ${err}`);
    assert.equal(err.status, status, `status; body ${JSON.stringify(err.response)}`);
    return err.response;
  }
  assert.fail(`expected a ${status} rejection, but the request succeeded`);
}

const ids = (list) => list.items.map((r) => r.id);

describe('a related collection\'s listRule on relation paths', () => {
  before(async () => {
    for (const [id, email, verified] of [
      ['uuuuuuuuuuuuu01', 'u1@example.com', true],
      ['uuuuuuuuuuuuu02', 'u2@example.com', false],
    ]) {
      await su.collection('users').create({
        id, email, verified, emailVisibility: true, password: PASSWORD, passwordConfirm: PASSWORD,
      });
    }
    await su.collections.create({
      name: 'owned',
      listRule: '',
      viewRule: '',
      fields: [
        { name: 'title', type: 'text' },
        { name: 'owner', type: 'relation', collectionId: '_pb_users_auth_', maxSelect: 1 },
      ],
    });
    for (const [id, owner] of [
      ['ooooooooooooo01', 'uuuuuuuuuuuuu01'],
      ['ooooooooooooo02', 'uuuuuuuuuuuuu02'],
      ['ooooooooooooo03', ''],
    ]) {
      await su.collection('owned').create({ id, title: id, owner });
    }
    await u1.collection('users').authWithPassword('u1@example.com', PASSWORD);
  });

  it('a guest filtering on owner.verified learns nothing', async () => {
    for (const filter of ['owner.verified = false', 'owner.verified = true']) {
      const list = await guest.collection('owned').getList(1, 30, { filter });
      assert.deepEqual(ids(list), [], filter);
    }
    const list = await guest.collection('owned').getList(1, 30, {
      filter: "owner.verified = true || title = 'ooooooooooooo03'",
    });
    assert.deepEqual(ids(list), ['ooooooooooooo03']);
  });

  it('a guest sorting by -owner.email learns nothing', async () => {
    const list = await guest.collection('owned').getList(1, 30, { sort: '-owner.email' });
    assert.deepEqual(ids(list), ['ooooooooooooo03']);
  });

  it('a user sees through the relations it may list', async () => {
    const list = await u1.collection('owned').getList(1, 30, { filter: 'owner.verified = true' });
    assert.deepEqual(ids(list), ['ooooooooooooo01']);
    const sorted = await u1.collection('owned').getList(1, 30, { sort: 'owner.email' });
    assert.deepEqual(ids(sorted), ['ooooooooooooo03', 'ooooooooooooo01']);
  });

  it('a superuser is never narrowed', async () => {
    const list = await su.collection('owned').getList(1, 30, { filter: 'owner.verified = false' });
    assert.deepEqual(ids(list), ['ooooooooooooo02']);
  });
});

describe('filters, sorts and list parameters', () => {
  before(async () => {
    await su.collections.create({
      name: 'things',
      listRule: '',
      viewRule: '',
      fields: [
        { name: 'title', type: 'text' },
        { name: 'count', type: 'number' },
        { name: 'meta', type: 'json' },
        { name: 'tags', type: 'select', maxSelect: 3, values: ['a', 'b', 'c'] },
        { name: 'body', type: 'editor' },
        { name: 'loc', type: 'geoPoint' },
        { name: 'secret', type: 'text', hidden: true },
      ],
    });
    await su.collection('things').create({
      id: 'ttttttttttttt01', title: 'hello', count: 3, meta: { a: [1, 2] }, tags: ['a', 'b'],
      body: '<p>Hello   <b>big</b> world of things</p>', loc: { lon: 2.3522, lat: 48.8566 }, secret: 's',
    });
    await su.collection('things').create({ id: 'ttttttttttttt02', title: '', count: 0, loc: { lon: -0.1276, lat: 51.5072 } });
  });

  it('modifiers on single-value fields are accepted and ignored', async () => {
    for (const [filter, want] of [
      ["title:each = 'hello'", ['ttttttttttttt01']],
      ['count:length = 3', ['ttttttttttttt01']],
      ['title:isset = true', []],
      ['meta:length = 2', []],
      ['tags:length = 2', ['ttttttttttttt01']],
    ]) {
      const list = await guest.collection('things').getList(1, 30, { filter });
      assert.deepEqual(ids(list), want, filter);
    }
    for (const sort of ['title:each', '-count:length', 'title:isset', 'meta:length']) {
      const list = await guest.collection('things').getList(1, 30, { sort });
      assert.equal(list.items.length, 2, sort);
    }
  });

  it('geoPoint fields store {lon, lat} and geoDistance filters by kilometres', async () => {
    const rec = await guest.collection('things').getOne('ttttttttttttt01');
    assert.deepEqual(rec.loc, { lon: 2.3522, lat: 48.8566 });
    const near = await guest.collection('things').getList(1, 30, {
      filter: 'geoDistance(loc.lon, loc.lat, 2.3522, 48.8566) < 100',
    });
    assert.deepEqual(ids(near), ['ttttttttttttt01']);
    const both = await guest.collection('things').getList(1, 30, {
      filter: 'geoDistance(loc.lon, loc.lat, 2.3522, 48.8566) < 400',
      sort: '-loc.lat',
    });
    assert.deepEqual(ids(both), ['ttttttttttttt02', 'ttttttttttttt01']);
    const err = await rejects(
      su.collection('things').create({ loc: { lon: 1, lat: 91 } }),
      400,
    );
    assert.equal(err.data.loc.code, 'validation_invalid_latitude');
  });

  it('// comments are parsed as PocketBase parses them', async () => {
    for (const [filter, want] of [
      ["title = 'hello' // trailing", ['ttttttttttttt01']],
      ["(title = 'hello' // ends at the closing parenthesis) || count > 100", ['ttttttttttttt01']],
      ["title = 'hello' && (count > 1 // (nested)\n && count < 9)", ['ttttttttttttt01']],
    ]) {
      const list = await guest.collection('things').getList(1, 30, { filter });
      assert.deepEqual(ids(list), want, filter);
    }
    for (const filter of [' ', '// only a comment', "title = 'hello' && (count > 1 // it's\n)"]) {
      await rejects(guest.collection('things').getList(1, 30, { filter }), 400);
    }
  });

  it('superuser-only identifiers are a 403 before anything is parsed', async () => {
    await rejects(guest.collection('things').getList(1, 30, { sort: '@collection.users.email' }), 403);
    await rejects(guest.collection('things').getList(1, 30, { filter: "title = '@request.x'" }), 403);
    await rejects(guest.collection('things').getList(1, 30, { filter: "title = '", sort: '@request.x' }), 403);
    const list = await su.collection('things').getList(1, 30, { sort: '@collection.users.email,id' });
    assert.equal(list.items.length, 2);
  });

  it('hidden fields in a guest\'s filter or sort are a 400', async () => {
    await rejects(guest.collection('things').getList(1, 30, { filter: "secret = 's'" }), 400);
    await rejects(guest.collection('things').getList(1, 30, { sort: 'secret' }), 400);
  });

  it('invalid page, perPage and skipTotal values are a 400', async () => {
    for (const query of [{ page: 'x' }, { page: '1.5' }, { perPage: 'abc' }, { skipTotal: 'yes' }]) {
      await rejects(guest.send('/api/collections/things/records', { query }), 400);
    }
    const list = await guest.send('/api/collections/things/records', {
      query: { page: '-3', perPage: '0', skipTotal: 'T' },
    });
    assert.deepEqual([list.page, list.perPage, list.totalItems], [1, 30, -1]);
  });

  it(':excerpt(n, true) trims before the ellipsis', async () => {
    const rec = await guest.collection('things').getOne('ttttttttttttt01', { fields: 'body:excerpt(10,true)' });
    assert.deepEqual(rec, { body: 'Hello big...' });
    await rejects(guest.collection('things').getOne('ttttttttttttt01', { fields: 'body:excerpt(0,true)' }), 400);
  });
});

describe('expand shapes', () => {
  before(async () => {
    const a = await su.collections.create({ name: 'ex_a', listRule: '', viewRule: '', fields: [{ name: 'name', type: 'text' }] });
    const b = await su.collections.create({
      name: 'ex_b', listRule: '', viewRule: '',
      fields: [{ name: 'a', type: 'relation', collectionId: a.id, maxSelect: 1 }],
    });
    await su.collections.create({
      name: 'ex_c', listRule: '', viewRule: '',
      fields: [{ name: 'b', type: 'relation', collectionId: b.id, maxSelect: 1 }, { name: 't', type: 'text' }],
    });
    await su.collection('ex_a').create({ id: 'aaaaaaaaaaaaa01', name: 'A1' });
    await su.collection('ex_b').create({ id: 'bbbbbbbbbbbbb01', a: 'aaaaaaaaaaaaa01' });
    await su.collection('ex_b').create({ id: 'bbbbbbbbbbbbb02' });
    await su.collection('ex_c').create({ id: 'ccccccccccccc01', b: 'bbbbbbbbbbbbb01' });
    await su.collection('ex_c').create({ id: 'ccccccccccccc02', b: 'bbbbbbbbbbbbb02' });
  });

  it('an unknown or partly invalid path leaves the expand key out', async () => {
    for (const expand of ['nope', 'b.nope', 't']) {
      const rec = await guest.collection('ex_c').getOne('ccccccccccccc01', { expand });
      assert.equal(rec.expand, undefined, expand);
    }
    const rec = await guest.collection('ex_c').getOne('ccccccccccccc01', { expand: 'b.a,nope' });
    assert.equal(rec.expand.b.expand.a.name, 'A1');
  });

  it('nested expands put expand: {} on middle records', async () => {
    const rec = await guest.collection('ex_c').getOne('ccccccccccccc02', { expand: 'b.a' });
    assert.equal(rec.expand.b.id, 'bbbbbbbbbbbbb02');
    assert.deepEqual(rec.expand.b.expand, {});
  });
});

describe('validation', () => {
  before(async () => {
    await su.collections.create({
      name: 'vv',
      createRule: '',
      fields: [
        { name: 'title', type: 'text', required: true },
        { name: 'n', type: 'number', max: 5 },
        { name: 'r', type: 'relation', collectionId: '_pb_users_auth_', maxSelect: 1 },
      ],
    });
  });

  it('missing relation records are reported beside other field errors', async () => {
    const err = await rejects(guest.collection('vv').create({ n: 10, r: 'nosuchuser00000' }), 400);
    assert.deepEqual(
      Object.fromEntries(Object.entries(err.data).map(([k, v]) => [k, v.code])),
      { n: 'validation_max_number_constraint', r: 'validation_missing_rel_records', title: 'validation_required' },
    );
  });

  it('a tokenKey sent on sign-up is ignored', async () => {
    const tokenKey = 'my-own-token-key-that-is-long-enough-xyz';
    for (const email of ['tk1@example.com', 'tk2@example.com']) {
      await guest.collection('users').create({ email, password: PASSWORD, passwordConfirm: PASSWORD, tokenKey });
      const auth = client();
      await auth.collection('users').authWithPassword(email, PASSWORD);
      assert.ok(auth.authStore.isValid);
    }
  });

  it('a password over bcrypt\'s 72 bytes answers as PocketBase does', async () => {
    const long = 'é'.repeat(37); // 37 characters, 74 bytes
    const asGuest = await rejects(
      guest.collection('users').create({ email: 'lp@example.com', password: long, passwordConfirm: long }),
      400,
    );
    assert.deepEqual(asGuest.data, {});
    const asSuperuser = await rejects(
      su.collection('users').create({ email: 'lp@example.com', password: long, passwordConfirm: long }),
      400,
    );
    assert.equal(asSuperuser.data.password.code, 'validation_invalid_value');
  });
});

describe('collections', () => {
  it('ids are pbc_ + the CRC-32 of type and name', async () => {
    const base = await su.collections.create({ name: 'zz' });
    assert.equal(base.id, 'pbc_37379816');
    const auth = await su.collections.create({ name: 'aa1', type: 'auth' });
    assert.equal(auth.id, 'pbc_2108647029');
  });

  it('auth collections list their fields in PocketBase\'s order', async () => {
    const c = await su.collections.create({
      name: 'aa2',
      type: 'auth',
      fields: [{ name: 'nick', type: 'text' }, { name: 'verified', type: 'bool' }],
    });
    assert.deepEqual(
      c.fields.map((f) => f.name),
      ['id', 'nick', 'verified', 'password', 'tokenKey', 'email', 'emailVisibility'],
    );
  });

  it('reserved names and too many columns are a 400', async () => {
    for (const name of ['_params', '_collections', 'sqlite_master']) {
      await rejects(su.collections.create({ name, fields: [{ name: 't', type: 'text' }] }), 400);
    }
    const fields = Array.from({ length: 2001 }, (_, i) => ({ name: `f${i}`, type: 'text' }));
    await rejects(su.collections.create({ name: 'wide', fields }), 400);
    await rejects(su.collections.getOne('wide'), 404);
  });
});
