// pb.backups with the official PocketBase JS SDK: list, create (named and default), download
// with a file token, upload, delete, restore, and PocketBase's errors for bad input. Runs
// against real PocketBase (SERVER=pocketbase), a single Syncbase node, and a replicating one
// (SYNCBASE_JS_SYNC=1), where a backup is the cluster's and restoring into the running cluster
// is refused with a clear message.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import PocketBase, { ClientResponseError } from 'pocketbase';
import { startServer, serverKind, SUPERUSER_EMAIL, SUPERUSER_PASSWORD } from './server.mjs';

const DATE_RE = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const replicating = serverKind().kind === 'syncbase' && process.env.SYNCBASE_JS_SYNC === '1';

let server;
let pb;

before(async () => {
  server = await startServer();
  pb = new PocketBase(server.url);
  pb.autoCancellation(false);
  await pb.collection('_superusers').authWithPassword(SUPERUSER_EMAIL, SUPERUSER_PASSWORD);
  await pb.collections.create({
    name: 'notes',
    type: 'base',
    listRule: '',
    viewRule: '',
    fields: [{ name: 'title', type: 'text' }],
  });
});

after(async () => {
  await server?.stop();
});

async function rejects(promise, status) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ClientResponseError, `expected ClientResponseError, got ${err}`);
    assert.equal(err.status, status, `status; body ${JSON.stringify(err.response)}`);
    return err;
  }
  assert.fail(`expected a ${status} rejection, but the request succeeded`);
}

/** Polls `check` (every 100 ms) until it returns true or `ms` pass. */
async function eventually(what, ms, check) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err; // a server restarting after a restore refuses connections for a moment
    }
    await new Promise((r) => setTimeout(r, 100)); // poll interval, not synchronisation
  }
  assert.fail(`${what} did not happen within ${ms} ms (last error: ${last})`);
}

async function titles() {
  const rows = await pb.collection('notes').getFullList({ sort: 'title' });
  return rows.map((r) => r.title);
}

async function download(key) {
  const token = await pb.files.getToken();
  const res = await fetch(pb.backups.getDownloadURL(token, key));
  assert.equal(res.status, 200);
  return new Uint8Array(await res.arrayBuffer());
}

describe('backups', () => {
  test('create, list, download, upload and delete', async () => {
    await pb.collection('notes').create({ title: 'kept in the backup' });
    assert.equal(await pb.backups.create('first_backup.zip'), true);
    // A name is optional: PocketBase generates one.
    assert.equal(await pb.backups.create(), true);
    const list = await pb.backups.getFullList();
    assert.equal(list.length, 2, JSON.stringify(list));
    const first = list.find((b) => b.key === 'first_backup.zip');
    assert.ok(first, JSON.stringify(list));
    assert.ok(first.size > 0);
    assert.match(first.modified, DATE_RE);
    const generated = list.find((b) => b.key !== 'first_backup.zip');
    assert.match(generated.key, /^pb_backup_[a-z0-9_]*\d{14}\.zip$/);

    const bytes = await download('first_backup.zip');
    assert.equal(bytes.length, first.size);
    assert.deepEqual([...bytes.slice(0, 4)], [0x50, 0x4b, 0x03, 0x04], 'a zip archive');
    // Without a superuser's file token: refused.
    const res = await fetch(pb.backups.getDownloadURL('not-a-token', 'first_backup.zip'));
    assert.equal(res.status, 403);

    // A downloaded backup uploads back under another name.
    const file = new File([bytes], 'uploaded_copy.zip', { type: 'application/zip' });
    assert.equal(await pb.backups.upload({ file }), true);
    const after = await pb.backups.getFullList();
    const copy = after.find((b) => b.key === 'uploaded_copy.zip');
    assert.ok(copy, JSON.stringify(after));
    assert.equal(copy.size, first.size);

    assert.equal(await pb.backups.delete('uploaded_copy.zip'), true);
    assert.equal(await pb.backups.delete(generated.key), true);
    const left = await pb.backups.getFullList();
    assert.deepEqual(left.map((b) => b.key), ['first_backup.zip']);
  });

  test('bad input is refused with PocketBase errors', async () => {
    const dup = await rejects(pb.backups.create('first_backup.zip'), 400);
    assert.equal(dup.response.data.name.code, 'validation_backup_name_exists');
    await rejects(pb.backups.create('Not Valid.tar'), 400);
    const notZip = new File([new TextEncoder().encode('hello')], 'hello.zip', { type: 'text/plain' });
    const upload = await rejects(pb.backups.upload({ file: notZip }), 400);
    assert.ok(upload.response.data.file, JSON.stringify(upload.response));
    await rejects(pb.backups.delete('missing.zip'), 400);
    await rejects(pb.backups.restore('missing.zip'), 400);
    // Superusers only.
    const guest = new PocketBase(server.url);
    await rejects(guest.backups.getFullList(), 401);
    await rejects(guest.backups.create('guest.zip'), 401);
  });

  test('restore brings the backed-up data back', async () => {
    const before = await titles();
    await pb.collection('notes').create({ title: 'written after the backup' });
    if (replicating) {
      const refused = await rejects(pb.backups.restore('first_backup.zip'), 400);
      assert.match(refused.response.message, /running cluster/);
      assert.deepEqual(await titles(), [...before, 'written after the backup'].sort());
      return;
    }
    assert.equal(await pb.backups.restore('first_backup.zip'), true);
    await eventually('the restore', 30_000, async () => {
      const now = await titles();
      return JSON.stringify(now) === JSON.stringify(before);
    });
    // The restored node serves and writes as before.
    await pb.collection('notes').create({ title: 'after the restore' });
    assert.deepEqual(await titles(), [...before, 'after the restore'].sort());
  });

  test('a backup holds the uploaded files, and a restore brings them back', async () => {
    if (replicating) return; // restoring into a running cluster is refused (test above)
    await pb.collections.create({
      name: 'docs',
      type: 'base',
      listRule: '',
      viewRule: '',
      fields: [{ name: 'doc', type: 'file', maxSelect: 1, maxSize: 1_000_000 }],
    });
    const bytes = new Uint8Array(50_000).map((_, i) => (i * 7) % 251);
    const file = new File([bytes], 'report.bin', { type: 'application/octet-stream' });
    const rec = await pb.collection('docs').create({ doc: file });
    const url = pb.files.getURL(rec, rec.doc);
    const fetched = async () => {
      const res = await fetch(url);
      return res.status === 200 ? new Uint8Array(await res.arrayBuffer()) : null;
    };
    assert.deepEqual(await fetched(), bytes);
    assert.equal(await pb.backups.create('files_backup.zip'), true);
    // The record and its file go; the restore brings both back.
    await pb.collection('docs').delete(rec.id);
    await eventually('the deleted file to be gone', 10_000, async () => (await fetched()) === null);
    assert.equal(await pb.backups.restore('files_backup.zip'), true);
    await eventually('the restored file', 30_000, async () => {
      const got = await fetched();
      return got !== null && Buffer.compare(Buffer.from(got), Buffer.from(bytes)) === 0;
    });
    assert.equal((await pb.collection('docs').getOne(rec.id)).doc, rec.doc);
  });
});
