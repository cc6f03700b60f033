// File fields through the official JS SDK: uploads in multipart creates and updates, names,
// downloads (types, ranges, attachments), thumbs of every format, protected files with file
// tokens, `field+` / `field-`, deletions, and the bad inputs PocketBase refuses. Runs against
// real PocketBase (SERVER=pocketbase) and Syncbase alike.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import PocketBase, { ClientResponseError } from 'pocketbase';
import { png, pngSize } from './png.mjs';
import { startServer, SUPERUSER_EMAIL, SUPERUSER_PASSWORD } from './server.mjs';

let server;
let pb;

const AVATAR = png(120, 60);
const blob = (bytes, type = 'application/octet-stream') => new Blob([bytes], { type });

async function get(url, headers = {}) {
  const res = await fetch(url, { headers });
  return { res, body: Buffer.from(await res.arrayBuffer()) };
}

async function rejects(promise, status) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ClientResponseError, `expected ClientResponseError, got ${err}`);
    assert.equal(err.status, status, `status; body ${JSON.stringify(err.response)}`);
    return err;
  }
  assert.fail(`expected a ${status} rejection`);
}

before(async () => {
  server = await startServer();
  pb = new PocketBase(server.url);
  pb.autoCancellation(false);
  await pb.collection('_superusers').authWithPassword(SUPERUSER_EMAIL, SUPERUSER_PASSWORD);
  await pb.collections.create({
    name: 'docs',
    type: 'base',
    listRule: '',
    viewRule: '@request.auth.id != ""',
    createRule: '',
    updateRule: '',
    fields: [
      { name: 'title', type: 'text' },
      {
        name: 'avatar',
        type: 'file',
        maxSelect: 1,
        maxSize: 1 << 20,
        mimeTypes: ['image/png', 'image/jpeg'],
        thumbs: ['50x50', '40x20t', '40x20b', '40x40f', '0x30', '30x0'],
      },
      { name: 'attachments', type: 'file', maxSelect: 3, maxSize: 2000 },
      { name: 'secret', type: 'file', maxSelect: 1, protected: true },
    ],
  });
});

after(async () => {
  await server?.stop();
});

function form(fields) {
  const fd = new FormData();
  for (const [k, v] of fields) fd.append(k, ...(Array.isArray(v) ? v : [v]));
  return fd;
}

describe('file fields', () => {
  let rec;

  test('a multipart create stores the files under PocketBase names', async () => {
    rec = await pb.collection('docs').create(
      form([
        ['title', 'first'],
        ['avatar', [blob(AVATAR, 'image/png'), 'My Avatar.png']],
        ['attachments', [blob('hello notes\n', 'text/plain'), 'notes.txt']],
        ['attachments', [blob('second file\n', 'text/plain'), 'second.txt']],
      ]),
    );
    assert.match(rec.avatar, /^my_avatar_[a-z0-9]{10}\.png$/);
    assert.equal(rec.attachments.length, 2);
    assert.match(rec.attachments[0], /^notes_[a-z0-9]{10}\.txt$/);
    assert.match(rec.attachments[1], /^second_[a-z0-9]{10}\.txt$/);
    assert.equal(rec.secret, '');
    const listed = await pb.collection('docs').getList(1, 10);
    assert.deepEqual(listed.items[0].attachments, rec.attachments);
    assert.equal(listed.items[0].avatar, rec.avatar);
  });

  test('files download with their type, inline or as attachments, and in ranges', async () => {
    const url = pb.files.getURL(rec, rec.avatar);
    const { res, body } = await get(url);
    assert.equal(res.status, 200);
    assert.deepEqual(body, AVATAR);
    assert.equal(res.headers.get('content-type'), 'image/png');
    assert.equal(res.headers.get('content-disposition'), `inline; filename="${rec.avatar}"`);
    assert.match(res.headers.get('cache-control'), /max-age=2592000/);
    assert.ok(res.headers.get('last-modified'));

    const dl = await get(pb.files.getURL(rec, rec.avatar, { download: true }));
    assert.equal(dl.res.headers.get('content-disposition'), `attachment; filename="${rec.avatar}"`);

    const text = await get(pb.files.getURL(rec, rec.attachments[0]));
    assert.equal(text.body.toString(), 'hello notes\n');
    assert.equal(text.res.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(text.res.headers.get('content-disposition'), `attachment; filename="${rec.attachments[0]}"`);

    const part = await get(url, { Range: 'bytes=1-3' });
    assert.equal(part.res.status, 206);
    assert.equal(part.res.headers.get('content-range'), `bytes 1-3/${AVATAR.length}`);
    assert.deepEqual(part.body, AVATAR.subarray(1, 4));

    const cached = await get(url, { 'If-Modified-Since': res.headers.get('last-modified') });
    assert.equal(cached.res.status, 304);

    const missing = await get(pb.files.getURL(rec, 'nope_1234567890.png'));
    assert.equal(missing.res.status, 404);
  });

  test('thumbs are cut to every size format', async () => {
    const want = {
      '100x100': [100, 100],
      '50x50': [50, 50],
      '40x20t': [40, 20],
      '40x20b': [40, 20],
      '40x40f': [40, 20],
      '0x30': [60, 30],
      '30x0': [30, 15],
    };
    for (const [thumb, size] of Object.entries(want)) {
      const { res, body } = await get(pb.files.getURL(rec, rec.avatar, { thumb }));
      assert.equal(res.status, 200, thumb);
      assert.equal(res.headers.get('content-type'), 'image/png', thumb);
      assert.deepEqual(pngSize(body), size, thumb);
      assert.equal(res.headers.get('content-disposition'), `inline; filename="${thumb}_${rec.avatar}"`);
      // Made once: the second request serves the same bytes.
      const again = await get(pb.files.getURL(rec, rec.avatar, { thumb }));
      assert.deepEqual(again.body, body, thumb);
    }
    // A size the field does not list serves the original.
    const other = await get(pb.files.getURL(rec, rec.avatar, { thumb: '77x77' }));
    assert.deepEqual(pngSize(other.body), [120, 60]);
    // Not an image: no thumb.
    const text = await get(pb.files.getURL(rec, rec.attachments[0], { thumb: '100x100' }));
    assert.equal(text.body.toString(), 'hello notes\n');
  });

  test('protected files need a file token and the view rule', async () => {
    const updated = await pb.collection('docs').update(
      rec.id,
      form([['secret', [blob('top secret', 'text/plain'), 'secret.txt']]]),
    );
    assert.match(updated.secret, /^secret_[a-z0-9]{10}\.txt$/);
    const url = pb.files.getURL(updated, updated.secret);
    assert.equal((await get(url)).res.status, 404, 'no token');
    assert.equal((await get(`${url}?token=garbage`)).res.status, 404, 'bad token');

    const token = await pb.files.getToken();
    const ok = await get(pb.files.getURL(updated, updated.secret, { token }));
    assert.equal(ok.res.status, 200);
    assert.equal(ok.body.toString(), 'top secret');

    // A user's file token passes the view rule (signed in); an auth token is not a file token.
    const users = new PocketBase(server.url);
    users.autoCancellation(false);
    await pb.collection('users').create({
      email: 'files@example.com',
      password: 'password-123',
      passwordConfirm: 'password-123',
    });
    await users.collection('users').authWithPassword('files@example.com', 'password-123');
    const userToken = await users.files.getToken();
    assert.equal((await get(users.files.getURL(updated, updated.secret, { token: userToken }))).res.status, 200);
    assert.equal(
      (await get(users.files.getURL(updated, updated.secret, { token: users.authStore.token }))).res.status,
      404,
    );
    // Tokens are for signed-in callers only.
    await rejects(new PocketBase(server.url).files.getToken(), 401);
  });

  test('field+ appends, field- removes, and removed files are gone', async () => {
    const more = await pb.collection('docs').update(
      rec.id,
      form([['attachments+', [blob('third', 'text/plain'), 'third.txt']]]),
    );
    assert.equal(more.attachments.length, 3);
    assert.deepEqual(more.attachments.slice(0, 2), rec.attachments);
    assert.match(more.attachments[2], /^third_[a-z0-9]{10}\.txt$/);

    const fewer = await pb.collection('docs').update(rec.id, { 'attachments-': [rec.attachments[0]] });
    assert.deepEqual(fewer.attachments, [rec.attachments[1], more.attachments[2]]);
    await waitGone(pb.files.getURL(rec, rec.attachments[0]));
    const kept = await get(pb.files.getURL(fewer, fewer.attachments[0]));
    assert.equal(kept.body.toString(), 'second file\n');
    rec = fewer;
  });

  test('replacing and emptying a field deletes the old files; so does deleting the record', async () => {
    const oldAvatar = pb.files.getURL(rec, rec.avatar);
    const oldThumb = pb.files.getURL(rec, rec.avatar, { thumb: '50x50' });
    const replaced = await pb.collection('docs').update(
      rec.id,
      form([['avatar', [blob(png(10, 10), 'image/png'), 'new.png']]]),
    );
    assert.match(replaced.avatar, /^new_[a-z0-9]{10}\.png$/);
    await waitGone(oldAvatar);
    await waitGone(oldThumb);

    const emptied = await pb.collection('docs').update(rec.id, { avatar: null });
    assert.equal(emptied.avatar, '');
    await waitGone(pb.files.getURL(replaced, replaced.avatar));

    await pb.collection('docs').delete(rec.id);
    for (const name of emptied.attachments) await waitGone(pb.files.getURL(emptied, name));
  });

  test('bad uploads are refused with PocketBase codes and store nothing', async () => {
    const refuse = async (fields, field, code) => {
      const err = await rejects(pb.collection('docs').create(form(fields)), 400);
      assert.equal(err.response.data[field]?.code, code, JSON.stringify(err.response));
    };
    await refuse([['avatar', [blob('plain text', 'image/png'), 'fake.png']]], 'avatar', 'validation_invalid_mime_type');
    await refuse([['attachments', [blob('x'.repeat(3000)), 'big.bin']]], 'attachments', 'validation_file_size_limit');
    await refuse(
      [1, 2, 3, 4].map((i) => ['attachments', [blob(`f${i}`), `f${i}.txt`]]),
      'attachments',
      'validation_too_many_files',
    );
    const invalid = await rejects(pb.collection('docs').create({ attachments: ['someone_elses.txt'] }), 400);
    assert.equal(invalid.response.data.attachments.code, 'validation_invalid_file');
    assert.equal((await pb.collection('docs').getList(1, 10)).totalItems, 0, 'nothing stored');

    // Path separators in a client's file name never reach the stored name.
    const evil = await pb.collection('docs').create(
      form([['attachments', [blob('evil'), '../../etc/evil.txt']]]),
    );
    assert.match(evil.attachments[0], /^evil_[a-z0-9]{10}\.txt$/);
    const { body } = await get(pb.files.getURL(evil, evil.attachments[0]));
    assert.equal(body.toString(), 'evil');
  });
});

/** Waits until a file URL answers 404 (files are deleted after the write commits). */
async function waitGone(url) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { res } = await get(url);
    if (res.status === 404) return;
    if (Date.now() > deadline) assert.fail(`${url} still served (${res.status})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
