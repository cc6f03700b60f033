// Drives a server with the official PocketBase JS SDK, the way an app would.
// Run against real PocketBase (`SERVER=pocketbase node --test`) to prove each assertion is true
// PocketBase behaviour, then against Syncbase (the default) to prove Syncbase matches it.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import PocketBase, { ClientResponseError } from 'pocketbase';
import { startServer, SUPERUSER_EMAIL, SUPERUSER_PASSWORD } from './server.mjs';

const ID_RE = /^[a-z0-9]{15}$/;
const DATE_RE = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}Z$/;

let server;
let pb;

// Request methods by URL path, so a failure can name the call that failed.
const methods = new Map();

before(async () => {
  server = await startServer();
  pb = new PocketBase(server.url);
  // Tests issue concurrent identical requests; the SDK would otherwise cancel all but the last.
  pb.autoCancellation(false);
  pb.beforeSend = (url, options) => {
    methods.set(url, options.method);
    return { url, options };
  };
});

after(async () => {
  await server?.stop();
});

/**
 * A test whose unexpected ClientResponseError names the request, status and body, so a failure
 * against Syncbase says exactly which call went wrong and what came back.
 */
function it(name, fn) {
  return test(name, async (t) => {
    try {
      await fn(t);
    } catch (err) {
      if (!(err instanceof ClientResponseError)) throw err;
      const method = methods.get(err.url.split('?')[0]) ?? '?';
      const url = decodeURIComponent(err.url.replace(server.url, ''));
      throw new Error(`${method} ${url} -> ${err.status} ${JSON.stringify(err.response)}`, {
        cause: err,
      });
    }
  });
}

/** Awaits `promise`, expects it to reject with a ClientResponseError, and returns that error. */
async function rejects(promise, status) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ClientResponseError, `expected ClientResponseError, got ${err}`);
    assert.equal(err.status, status, `status; body ${JSON.stringify(err.response)}`);
    assert.equal(typeof err.response.message, 'string');
    assert.equal(typeof err.response.data, 'object');
    assert.notEqual(err.response.data, null);
    return err;
  }
  assert.fail(`expected a ${status} rejection, but the request succeeded`);
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function pool(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return out;
}

describe('health and superuser auth', () => {
  it('health check answers 200', async () => {
    const health = await pb.health.check();
    assert.equal(health.code, 200);
    assert.equal(health.message, 'API is healthy.');
  });

  it('collections need auth: 401 without a token', async () => {
    await rejects(pb.collections.getList(1, 10), 401);
  });

  it('a wrong password is a 400', async () => {
    const anon = new PocketBase(server.url);
    await rejects(anon.collection('_superusers').authWithPassword(SUPERUSER_EMAIL, 'wrong-password'), 400);
    assert.equal(anon.authStore.isValid, false);
  });

  it('authWithPassword as superuser', async () => {
    const auth = await pb.collection('_superusers').authWithPassword(SUPERUSER_EMAIL, SUPERUSER_PASSWORD);
    assert.equal(auth.record.email, SUPERUSER_EMAIL);
    assert.equal(auth.record.collectionName, '_superusers');
    assert.match(auth.record.id, ID_RE);
    assert.equal(auth.record.password, undefined);
    assert.equal(auth.record.tokenKey, undefined);
    assert.equal(auth.token.split('.').length, 3, 'token is a JWT');
    assert.equal(pb.authStore.isValid, true);
    assert.equal(pb.authStore.isSuperuser, true);
  });
});

describe('collections and records', () => {
  let authors;
  let posts;
  let ann;

  before(async () => {
    assert.equal(pb.authStore.isSuperuser, true, 'superuser auth test ran first');
  });

  it('create collections with every field kind the app uses', async () => {
    authors = await pb.collections.create({
      name: 'authors',
      type: 'base',
      fields: [{ name: 'name', type: 'text', required: true }],
    });
    assert.equal(authors.name, 'authors');
    assert.equal(authors.type, 'base');

    posts = await pb.collections.create({
      name: 'posts',
      type: 'base',
      fields: [
        { name: 'title', type: 'text', required: true },
        { name: 'views', type: 'number' },
        { name: 'published', type: 'bool' },
        { name: 'tags', type: 'select', maxSelect: 3, values: ['a', 'b', 'c'] },
        { name: 'author', type: 'relation', collectionId: authors.id, maxSelect: 1 },
        { name: 'created', type: 'autodate', onCreate: true, onUpdate: false },
        { name: 'updated', type: 'autodate', onCreate: true, onUpdate: true },
      ],
      indexes: ['CREATE INDEX idx_posts_views ON posts (views)'],
    });
    assert.equal(posts.name, 'posts');
    assert.ok(posts.id, 'collection has an id');
    const names = posts.fields.map((f) => f.name);
    for (const n of ['id', 'title', 'views', 'published', 'tags', 'author', 'created', 'updated']) {
      assert.ok(names.includes(n), `field ${n} in ${JSON.stringify(names)}`);
    }
    const title = posts.fields.find((f) => f.name === 'title');
    assert.equal(title.type, 'text');
    assert.equal(title.required, true);
    const tags = posts.fields.find((f) => f.name === 'tags');
    assert.deepEqual(tags.values, ['a', 'b', 'c']);
    assert.equal(tags.maxSelect, 3);
    assert.equal(posts.fields.find((f) => f.name === 'author').collectionId, authors.id);
    assert.equal(posts.listRule, null, 'rules default to null (superusers only)');
  });

  it('view a collection by name and by id', async () => {
    const byName = await pb.collections.getOne('posts');
    const byId = await pb.collections.getOne(posts.id);
    assert.equal(byName.id, posts.id);
    assert.equal(byId.name, 'posts');
    const list = await pb.collections.getFullList();
    assert.ok(list.some((c) => c.name === 'posts'));
    assert.ok(list.some((c) => c.name === '_superusers'));
  });

  it('create, view, update and delete a record', async () => {
    ann = await pb.collection('authors').create({ name: 'Ann' });
    assert.match(ann.id, ID_RE);

    const created = await pb.collection('posts').create({
      title: 'hello',
      views: 1,
      published: true,
      tags: ['a', 'b'],
      author: ann.id,
    });
    assert.match(created.id, ID_RE);
    assert.equal(created.collectionName, 'posts');
    assert.equal(created.collectionId, posts.id);
    assert.equal(created.title, 'hello');
    assert.equal(created.views, 1);
    assert.equal(created.published, true);
    assert.deepEqual(created.tags, ['a', 'b']);
    assert.equal(created.author, ann.id);
    assert.match(created.created, DATE_RE);
    assert.match(created.updated, DATE_RE);

    const fetched = await pb.collection('posts').getOne(created.id);
    assert.deepEqual(fetched, created);

    const updated = await pb.collection('posts').update(created.id, { title: 'hello again' });
    assert.equal(updated.title, 'hello again');
    assert.equal(updated.views, 1, 'untouched fields keep their values');
    assert.equal(updated.created, created.created, 'created is onCreate only');
    assert.ok(updated.updated >= created.updated, 'updated moves forward');

    assert.equal(await pb.collection('posts').delete(created.id), true);
    await rejects(pb.collection('posts').getOne(created.id), 404);
    await rejects(pb.collection('posts').delete(created.id), 404);
  });

  it('zero values of omitted fields', async () => {
    const r = await pb.collection('posts').create({ title: 'bare' });
    assert.equal(r.views, 0);
    assert.equal(r.published, false);
    assert.deepEqual(r.tags, []);
    assert.equal(r.author, '');
    await pb.collection('posts').delete(r.id);
  });

  it('expand a relation', async () => {
    const r = await pb.collection('posts').create({ title: 'with author', author: ann.id });
    const got = await pb.collection('posts').getOne(r.id, { expand: 'author' });
    assert.equal(got.expand.author.id, ann.id);
    assert.equal(got.expand.author.name, 'Ann');
    assert.equal(got.expand.author.collectionName, 'authors');
    await pb.collection('posts').delete(r.id);
  });

  it('field modifiers: number +/-, select append/prepend/remove', async () => {
    const r = await pb.collection('posts').create({ title: 'mods', views: 10, tags: ['b'] });
    let u = await pb.collection('posts').update(r.id, { 'views+': 5 });
    assert.equal(u.views, 15);
    u = await pb.collection('posts').update(r.id, { 'views-': 20 });
    assert.equal(u.views, -5);
    u = await pb.collection('posts').update(r.id, { 'tags+': 'c' });
    assert.deepEqual(u.tags, ['b', 'c']);
    u = await pb.collection('posts').update(r.id, { '+tags': 'a' });
    assert.deepEqual(u.tags, ['a', 'b', 'c']);
    u = await pb.collection('posts').update(r.id, { 'tags-': 'b' });
    assert.deepEqual(u.tags, ['a', 'c']);
    await pb.collection('posts').delete(r.id);
  });

  it('client-supplied id, and a duplicate is validation_not_unique', async () => {
    const id = 'abcdefghijk1234';
    const r = await pb.collection('posts').create({ id, title: 'mine' });
    assert.equal(r.id, id);
    const err = await rejects(pb.collection('posts').create({ id, title: 'again' }), 400);
    assert.equal(err.response.data.id.code, 'validation_not_unique');
    await pb.collection('posts').delete(id);
  });

  it('a client id that is not 15 chars of [a-z0-9] is a 400 on id', async () => {
    for (const id of ['short', 'ABCDEFGHIJK1234', 'abcdefghijk123-']) {
      const err = await rejects(pb.collection('posts').create({ id, title: 'bad id' }), 400);
      assert.ok(err.response.data.id, `data.id for ${id}: ${JSON.stringify(err.response)}`);
    }
  });

  it('validation errors: required and select values', async () => {
    let err = await rejects(pb.collection('posts').create({ views: 3 }), 400);
    assert.equal(err.response.status, 400);
    assert.equal(err.response.data.title.code, 'validation_required');
    assert.equal(typeof err.response.data.title.message, 'string');

    err = await rejects(pb.collection('posts').create({ title: 'x', tags: ['z'] }), 400);
    assert.equal(err.response.data.tags.code, 'validation_invalid_value');

    const list = await pb.collection('posts').getList(1, 1, { filter: 'views = 3' });
    assert.equal(list.totalItems, 0, 'nothing written by a failed create');
  });

  it('multipart body', async () => {
    const form = new FormData();
    form.append('title', 'from a form');
    form.append('views', '7');
    form.append('published', 'true');
    form.append('tags', 'a');
    form.append('tags', 'c');
    const r = await pb.collection('posts').create(form);
    assert.equal(r.title, 'from a form');
    assert.equal(r.views, 7, 'form values are coerced to the field type');
    assert.equal(r.published, true);
    assert.deepEqual(r.tags, ['a', 'c']);
    await pb.collection('posts').delete(r.id);
  });

  it('filter language: multi-valued fields, :length, :lower, null, comments', async () => {
    const made = await Promise.all([
      pb.collection('posts').create({ title: 'Filter One', views: 501, tags: ['a', 'c'] }),
      pb.collection('posts').create({ title: 'filter two', views: 502, tags: ['c'] }),
      pb.collection('posts').create({ title: 'filter three', views: 503 }),
    ]);
    const titles = async (filter) =>
      (await pb.collection('posts').getFullList({ filter: `views > 500 && (${filter})`, sort: 'views' }))
        .map((r) => r.title);
    assert.deepEqual(await titles("tags:each ?= 'c'"), ['Filter One', 'filter two']);
    assert.deepEqual(await titles("tags ~ 'a'"), ['Filter One']);
    assert.deepEqual(await titles('tags:length = 2'), ['Filter One']);
    assert.deepEqual(await titles("title:lower = 'filter one'"), ['Filter One']);
    assert.deepEqual(await titles("title ~ 'filter t'"), ['filter two', 'filter three']);
    assert.deepEqual(await titles("author = null && author = ''"), ['Filter One', 'filter two', 'filter three']);
    const direct = async (filter) =>
      (await pb.collection('posts').getFullList({ filter, sort: 'views' })).map((r) => r.title);
    assert.deepEqual(await direct('views >= 502 // a trailing comment'), ['filter two', 'filter three']);
    // PocketBase cuts a parenthesised group out by bracket matching before it tokenizes, so a
    // comment inside a group ends at the group's ')'.
    assert.deepEqual(
      await direct('views > 500 && (views < 503 // ends at the paren) || views = 503'),
      ['Filter One', 'filter two', 'filter three'],
    );
    await Promise.all(made.map((r) => pb.collection('posts').delete(r.id)));
  });

  it('adding, renaming and removing fields keeps the rows', async () => {
    const notes = await pb.collections.create({
      name: 'notes',
      fields: [
        { name: 'title', type: 'text', required: true },
        { name: 'old', type: 'text' },
        { name: 'gone', type: 'text' },
      ],
    });
    const r = await pb.collection('notes').create({ title: 'keep', old: 'o1', gone: 'g1' });
    const fields = notes.fields
      .filter((f) => f.name !== 'gone')
      .map((f) => (f.name === 'old' ? { ...f, name: 'renamed' } : f));
    fields.push({ name: 'added', type: 'number' });
    const updated = await pb.collections.update('notes', { fields });
    assert.deepEqual(updated.fields.map((f) => f.name), ['id', 'title', 'renamed', 'added']);
    const after = await pb.collection('notes').getOne(r.id);
    assert.equal(after.title, 'keep');
    assert.equal(after.renamed, 'o1', 'a renamed field (same field id) keeps its values');
    assert.equal(after.added, 0);
    assert.equal(after.gone, undefined);
    assert.equal(after.old, undefined);

    assert.equal(await pb.collections.delete('notes'), true);
    await rejects(pb.collection('notes').getList(1, 10), 404);
  });

  it('unknown collection and unknown record are 404', async () => {
    await rejects(pb.collection('no_such_collection').getList(1, 10), 404);
    await rejects(pb.collection('no_such_collection').create({ title: 'x' }), 404);
    await rejects(pb.collections.getOne('no_such_collection'), 404);
    await rejects(pb.collection('posts').getOne('zzzzzzzzzzzzzzz'), 404);
  });
});

describe('listing', () => {
  const N = 250;
  let all; // seeded records by n

  before(async () => {
    assert.equal(pb.authStore.isSuperuser, true, 'superuser auth test ran first');
    await pb.collections.create({
      name: 'items',
      type: 'base',
      fields: [
        { name: 'n', type: 'number' },
        { name: 'label', type: 'text' },
        { name: 'active', type: 'bool' },
      ],
      indexes: ['CREATE INDEX idx_items_n ON items (n)'],
    });
    const ns = Array.from({ length: N }, (_, i) => i);
    all = await pool(ns, 8, (n) =>
      pb.collection('items').create({ n, label: `item ${n}`, active: n % 2 === 0 }),
    );
  });

  it('filter + sort + paging totals', async () => {
    const filter = 'n >= 100 && active = true';
    const page1 = await pb.collection('items').getList(1, 20, { filter, sort: '-n' });
    // n in [100, 249] and even: 75 records.
    assert.equal(page1.page, 1);
    assert.equal(page1.perPage, 20);
    assert.equal(page1.totalItems, 75);
    assert.equal(page1.totalPages, 4);
    assert.deepEqual(
      page1.items.map((r) => r.n),
      Array.from({ length: 20 }, (_, i) => 248 - 2 * i),
    );
    const page4 = await pb.collection('items').getList(4, 20, { filter, sort: '-n' });
    assert.equal(page4.items.length, 15);
    assert.equal(page4.items.at(-1).n, 100);
  });

  it('filter with SDK-bound params, ||, parentheses and ~', async () => {
    const list = await pb.collection('items').getList(1, 50, {
      filter: pb.filter('(label = {:a} || label = {:b}) && label ~ {:c}', {
        a: 'item 7',
        b: "item 8",
        c: 'item',
      }),
      sort: 'n',
    });
    assert.deepEqual(list.items.map((r) => r.n), [7, 8]);
  });

  it('multi-key sort', async () => {
    const list = await pb.collection('items').getList(1, 4, { filter: 'n < 4', sort: '-active,n' });
    assert.deepEqual(list.items.map((r) => r.n), [0, 2, 1, 3]);
  });

  it('skipTotal gives -1 totals', async () => {
    const list = await pb.collection('items').getList(1, 30, { skipTotal: true, sort: 'n' });
    assert.equal(list.totalItems, -1);
    assert.equal(list.totalPages, -1);
    assert.equal(list.perPage, 30);
    assert.equal(list.items.length, 30);
    assert.equal(list.items[0].n, 0);
  });

  it('perPage defaults to 30, 0 means the default and 5000 is clamped to 1000', async () => {
    const def = await pb.collection('items').getList();
    assert.equal(def.perPage, 30);
    assert.equal(def.items.length, 30);
    assert.equal(def.totalItems, N);
    assert.equal(def.totalPages, Math.ceil(N / 30));
    const zero = await pb.collection('items').getList(1, 0);
    assert.equal(zero.perPage, 30);
    const big = await pb.collection('items').getList(1, 5000);
    assert.equal(big.perPage, 1000);
    assert.equal(big.items.length, N);
  });

  it('getFullList walks every page', async () => {
    const full = await pb.collection('items').getFullList({ batch: 100, sort: 'n' });
    assert.equal(full.length, N);
    assert.deepEqual(full.map((r) => r.n), Array.from({ length: N }, (_, i) => i));
    assert.equal(new Set(full.map((r) => r.id)).size, N);
    assert.deepEqual(new Set(full.map((r) => r.id)), new Set(all.map((r) => r.id)));
  });

  it('getFirstListItem', async () => {
    const first = await pb.collection('items').getFirstListItem('n = 42');
    assert.equal(first.n, 42);
    assert.equal(first.label, 'item 42');
    assert.equal(first.id, all[42].id);
    await rejects(pb.collection('items').getFirstListItem('n = 12345'), 404);
  });

  it('fields picks the listed keys only', async () => {
    const list = await pb.collection('items').getList(1, 5, { fields: 'id,n', sort: 'n' });
    for (const item of list.items) {
      assert.deepEqual(Object.keys(item).sort(), ['id', 'n']);
    }
    assert.deepEqual(list.items.map((r) => r.n), [0, 1, 2, 3, 4]);
  });

  it('a bad filter is a 400: syntax error and unknown field', async () => {
    await rejects(pb.collection('items').getList(1, 10, { filter: 'n >' }), 400);
    await rejects(pb.collection('items').getList(1, 10, { filter: 'no_such_field = 1' }), 400);
  });
});
