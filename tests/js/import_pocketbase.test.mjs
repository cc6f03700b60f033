// `syncbase import pocketbase` and `syncbase export pocketbase` against real PocketBase (issue
// 16): PocketBase makes collections of every field type Syncbase supports, rules, indexes,
// users and records through this SDK, and issues a token; it is stopped; its pb_data is
// imported; Syncbase must then serve the same collections and records, let the users log in
// with their passwords and accept PocketBase's token. Then the import is exported back and
// PocketBase serves the exported directory with the same records. Files come along both ways:
// a record's single image and its protected list of text files download with the same names
// and bytes from Syncbase (thumbs made again) and from PocketBase after the export.
//
// It needs both servers, so it runs once, in the plain Syncbase pass (SERVER=syncbase).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import PocketBase from 'pocketbase';
import { png, pngSize } from './png.mjs';
import { serverKind, startServer, SUPERUSER_EMAIL, SUPERUSER_PASSWORD } from './server.mjs';

const execFileP = promisify(execFile);
const skip =
  (process.env.SERVER ?? 'syncbase') !== 'syncbase' || process.env.SYNCBASE_JS_SYNC === '1'
    ? 'needs PocketBase and Syncbase together: runs in the plain Syncbase pass'
    : false;

const USERS = [
  { email: 'ada@example.com', password: 'ada-password-1', name: 'Ada' },
  { email: 'bob@example.com', password: 'bob-password-2', name: 'Bob' },
];
const COLLECTIONS = ['tags', 'posts', 'users', 'docs'];
// The files of the one `docs` record: an image in a single-file field, two text files in a
// protected multi-file field.
const COVER = png(120, 80);
const ATTACHMENTS = [
  { name: 'notes.txt', bytes: Buffer.from('first attachment\n'.repeat(50)) },
  { name: 'second.txt', bytes: Buffer.from('second attachment, different bytes\n') },
];

/** Runs the syncbase binary; resolves `{ code, stdout, stderr }` whatever its exit code. */
async function syncbase(args) {
  try {
    const { stdout, stderr } = await execFileP(serverKind('syncbase').bin, args);
    return { code: 0, stdout, stderr };
  } catch (err) {
    if (typeof err.code !== 'number') throw err;
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

async function sha256(file) {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

/** Every record of each collection, as the superuser reads them, sorted by id. */
async function snapshot(url) {
  const pb = new PocketBase(url);
  await pb.collection('_superusers').authWithPassword(SUPERUSER_EMAIL, SUPERUSER_PASSWORD);
  const out = {};
  for (const name of COLLECTIONS) {
    out[name] = await pb.collection(name).getFullList({ sort: 'id' });
  }
  return out;
}

async function download(url) {
  const res = await fetch(url);
  return { status: res.status, type: res.headers.get('content-type'), body: Buffer.from(await res.arrayBuffer()) };
}

/**
 * The files of the `docs` record download from `url` with the bytes PocketBase was given: the
 * cover (and its 50x50 thumb) openly, the protected attachments only with a file token.
 */
async function checkFiles(url, doc) {
  const pb = new PocketBase(url);
  const cover = await download(pb.files.getURL(doc, doc.cover));
  assert.equal(cover.status, 200);
  assert.ok(cover.body.equals(COVER), 'the cover has its bytes');
  const thumb = await download(pb.files.getURL(doc, doc.cover, { thumb: '50x50' }));
  assert.equal(thumb.status, 200);
  assert.match(thumb.type, /^image\/png/);
  assert.deepEqual(pngSize(thumb.body), [50, 50]);
  assert.equal(doc.attachments.length, ATTACHMENTS.length);
  const open = await download(pb.files.getURL(doc, doc.attachments[0]));
  assert.notEqual(open.status, 200, 'a protected file needs a token');
  await pb.collection('users').authWithPassword(USERS[0].email, USERS[0].password);
  const token = await pb.files.getToken();
  for (const [i, want] of ATTACHMENTS.entries()) {
    const name = doc.attachments[i];
    assert.ok(name.startsWith(want.name.replace('.txt', '_')), `${name} is ${want.name}`);
    const got = await download(pb.files.getURL(doc, name, { token }));
    assert.equal(got.status, 200, name);
    assert.ok(got.body.equals(want.bytes), `${name} has its bytes`);
  }
}

async function appSettings(url) {
  const pb = new PocketBase(url);
  await pb.collection('_superusers').authWithPassword(SUPERUSER_EMAIL, SUPERUSER_PASSWORD);
  const { meta } = await pb.settings.getAll();
  return { appName: meta.appName, senderName: meta.senderName };
}

const SETTINGS = { appName: 'Imported App', senderName: 'Imported Sender' };

/** The parts of a collection definition an import must keep. */
function shape(c) {
  return {
    id: c.id,
    name: c.name,
    type: c.type,
    listRule: c.listRule,
    viewRule: c.viewRule,
    createRule: c.createRule,
    updateRule: c.updateRule,
    deleteRule: c.deleteRule,
    indexes: c.indexes,
    // PocketBase leaves `required` out on autodate fields, Syncbase says false.
    fields: c.fields.map((f) => ({ id: f.id, name: f.name, type: f.type, required: !!f.required })),
  };
}

async function collectionShapes(url) {
  const pb = new PocketBase(url);
  await pb.collection('_superusers').authWithPassword(SUPERUSER_EMAIL, SUPERUSER_PASSWORD);
  const out = {};
  for (const name of COLLECTIONS) out[name] = shape(await pb.collections.getOne(name));
  return out;
}

describe('import from PocketBase, export back', { skip }, () => {
  let root;
  let pbData;
  let sbDir;
  let before_;
  let shapes;
  let pbToken;
  let importReport;
  let doc;

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'sb-import-'));
    pbData = path.join(root, 'pb', 'pb_data');
    sbDir = path.join(root, 'sb');
    await mkdir(path.dirname(pbData), { recursive: true });
    const pbServer = await startServer('pocketbase', { dataDir: pbData });
    try {
      const pb = new PocketBase(pbServer.url);
      await pb.collection('_superusers').authWithPassword(SUPERUSER_EMAIL, SUPERUSER_PASSWORD);
      await pb.settings.update({ meta: { appName: 'Imported App', senderName: 'Imported Sender' } });
      const tags = await pb.collections.create({
        name: 'tags',
        type: 'base',
        listRule: '',
        viewRule: '',
        fields: [{ name: 'label', type: 'text', required: true, max: 40 }],
      });
      await pb.collections.create({
        name: 'posts',
        type: 'base',
        listRule: '@request.auth.id != ""',
        viewRule: '@request.auth.id != ""',
        createRule: '@request.auth.id != ""',
        updateRule: 'author = @request.auth.id',
        deleteRule: null,
        fields: [
          { name: 'title', type: 'text', required: true, max: 200 },
          { name: 'views', type: 'number', onlyInt: true, min: 0 },
          { name: 'rating', type: 'number' },
          { name: 'published', type: 'bool' },
          { name: 'contact', type: 'email' },
          { name: 'site', type: 'url' },
          { name: 'body', type: 'editor' },
          { name: 'due', type: 'date' },
          { name: 'status', type: 'select', values: ['draft', 'live'], maxSelect: 1 },
          { name: 'labels', type: 'select', values: ['a', 'b', 'c'], maxSelect: 3 },
          { name: 'meta', type: 'json' },
          { name: 'tag', type: 'relation', collectionId: tags.id, maxSelect: 1 },
          { name: 'tags', type: 'relation', collectionId: tags.id, maxSelect: 5 },
          { name: 'author', type: 'relation', collectionId: '_pb_users_auth_', maxSelect: 1 },
          { name: 'place', type: 'geoPoint' },
          { name: 'created', type: 'autodate', onCreate: true },
          { name: 'updated', type: 'autodate', onCreate: true, onUpdate: true },
        ],
        indexes: ['CREATE UNIQUE INDEX idx_posts_title ON posts (title)'],
      });
      await pb.collections.create({
        name: 'docs',
        type: 'base',
        // Protected files need a token whose record passes the view rule (with an open rule,
        // they are open).
        listRule: '@request.auth.id != ""',
        viewRule: '@request.auth.id != ""',
        fields: [
          { name: 'title', type: 'text' },
          { name: 'cover', type: 'file', maxSelect: 1, maxSize: 1 << 20, mimeTypes: ['image/png'], thumbs: ['50x50'] },
          { name: 'attachments', type: 'file', maxSelect: 3, maxSize: 1 << 20, protected: true },
        ],
      });
      const users = [];
      for (const u of USERS) {
        users.push(
          await pb.collection('users').create({ ...u, passwordConfirm: u.password, verified: true }),
        );
      }
      const tagIds = [];
      for (const label of ['red', 'green', 'blue']) {
        tagIds.push((await pb.collection('tags').create({ label })).id);
      }
      for (let i = 0; i < 6; i++) {
        await pb.collection('posts').create({
          title: `Post ${i}`,
          views: i * 10,
          rating: i / 4,
          published: i % 2 === 0,
          contact: `p${i}@example.com`,
          site: `https://example.com/${i}`,
          body: `<p>Body <b>${i}</b></p>`,
          due: `2026-0${(i % 9) + 1}-15 10:30:00.000Z`,
          status: i % 2 ? 'live' : 'draft',
          labels: ['a', 'b', 'c'].slice(0, i % 4),
          meta: { n: i, nested: { list: [i, `x${i}`] } },
          tag: tagIds[i % 3],
          tags: tagIds.slice(0, (i % 3) + 1),
          author: users[i % 2].id,
          place: { lon: 10 + i, lat: -20 - i },
        });
      }
      doc = await pb.collection('docs').create({
        title: 'with files',
        cover: new File([COVER], 'cover.png', { type: 'image/png' }),
        attachments: ATTACHMENTS.map((a) => new File([a.bytes], a.name, { type: 'text/plain' })),
      });
      // PocketBase itself serves them, and makes the thumb (which the import leaves behind).
      await checkFiles(pbServer.url, doc);
      // A token PocketBase issued before the import (valid for the users collection's duration).
      const user = new PocketBase(pbServer.url);
      await user.collection('users').authWithPassword(USERS[0].email, USERS[0].password);
      pbToken = user.authStore.token;
      before_ = await snapshot(pbServer.url);
      shapes = await collectionShapes(pbServer.url);
    } finally {
      await pbServer.stop();
    }
  });

  after(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  test('the import copies every collection and record and never modifies pb_data', async () => {
    const digest = await sha256(path.join(pbData, 'data.db'));
    const run = await syncbase(['import', 'pocketbase', pbData, '--dir', sbDir, '--json']);
    assert.equal(run.code, 0, run.stderr);
    importReport = JSON.parse(run.stdout);
    const counts = Object.fromEntries(importReport.collections.map((c) => [c.collection, c.records]));
    assert.equal(counts.posts, 6);
    assert.equal(counts.tags, 3);
    assert.equal(counts.users, USERS.length);
    assert.equal(await sha256(path.join(pbData, 'data.db')), digest, 'pb_data/data.db changed');
    // Every file came along; what did not (the thumb PocketBase made) is named.
    assert.equal(importReport.files, 1 + ATTACHMENTS.length);
    const notes = importReport.notCarried.map((n) => `${n.subject}: ${n.reason}`).join('\n');
    assert.doesNotMatch(notes, /avatar|cover|attachments/);
    assert.match(notes, /^pb_data\/storage: 1 thumbnails not copied/m);
  });

  test('Syncbase serves the imported data: records, rules, indexes, passwords, tokens', async () => {
    const server = await startServer('syncbase', { dataDir: sbDir });
    try {
      assert.deepEqual(await collectionShapes(server.url), shapes);
      assert.deepEqual(await snapshot(server.url), before_);
      assert.deepEqual(await appSettings(server.url), SETTINGS);
      await checkFiles(server.url, doc);

      // Users log in with the passwords they set on PocketBase.
      for (const u of USERS) {
        const pb = new PocketBase(server.url);
        const auth = await pb.collection('users').authWithPassword(u.email, u.password);
        assert.equal(auth.record.email, u.email);
      }
      const wrong = new PocketBase(server.url);
      await assert.rejects(
        wrong.collection('users').authWithPassword(USERS[0].email, 'not-the-password'),
        (err) => err.status === 400,
      );

      // PocketBase's token authenticates: the list rule lets only signed-in users read posts.
      const anon = new PocketBase(server.url);
      assert.equal((await anon.collection('posts').getList(1, 50)).totalItems, 0);
      const holder = new PocketBase(server.url);
      holder.authStore.save(pbToken, null);
      const refreshed = await holder.collection('users').authRefresh();
      assert.equal(refreshed.record.email, USERS[0].email);
      assert.equal((await holder.collection('posts').getList(1, 50)).totalItems, 6);

      // The unique index came along.
      await assert.rejects(
        holder.collection('posts').create({ title: 'Post 1' }),
        (err) => err.status === 400,
      );
    } finally {
      await server.stop();
    }
  });

  test('a second import into the same directory refuses unless --force', async () => {
    const again = await syncbase(['import', 'pocketbase', pbData, '--dir', sbDir]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /not empty.*--force/s);
    const forced = await syncbase(['import', 'pocketbase', pbData, '--dir', sbDir, '--force', '--json']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(JSON.parse(forced.stdout).records, importReport.records);
  });

  test('bad sources get a clear error and create nothing', async () => {
    const target = path.join(root, 'never');
    const missing = await syncbase(['import', 'pocketbase', path.join(root, 'nope'), '--dir', target]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /does not exist/);
    const empty = path.join(root, 'empty');
    await mkdir(empty);
    const noDb = await syncbase(['import', 'pocketbase', empty, '--dir', target]);
    assert.notEqual(noDb.code, 0);
    assert.match(noDb.stderr, /has no data\.db/);
    const junk = path.join(root, 'junk');
    await mkdir(junk);
    await writeFile(path.join(junk, 'data.db'), 'this is not a database, it is a text file '.repeat(200));
    const notDb = await syncbase(['import', 'pocketbase', junk, '--dir', target]);
    assert.notEqual(notDb.code, 0);
    assert.match(notDb.stderr, /not a PocketBase database/);
    await assert.rejects(readFile(path.join(target, 'data.db')), { code: 'ENOENT' });
  });

  test('export back: PocketBase serves the exported directory with the same records', async () => {
    const out = path.join(root, 'back', 'pb_data');
    const run = await syncbase(['export', 'pocketbase', '--dir', sbDir, out, '--json']);
    assert.equal(run.code, 0, run.stderr);
    const exported = JSON.parse(run.stdout);
    assert.equal(exported.records, importReport.records);
    assert.equal(exported.files, 1 + ATTACHMENTS.length);
    const server = await startServer('pocketbase', { dataDir: out });
    try {
      assert.deepEqual(await collectionShapes(server.url), shapes);
      assert.deepEqual(await snapshot(server.url), before_);
      assert.deepEqual(await appSettings(server.url), SETTINGS);
      await checkFiles(server.url, doc);
      const pb = new PocketBase(server.url);
      const auth = await pb.collection('users').authWithPassword(USERS[1].email, USERS[1].password);
      assert.equal(auth.record.email, USERS[1].email);
    } finally {
      await server.stop();
    }
  });
});
