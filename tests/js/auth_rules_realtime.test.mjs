// Auth, API rules, realtime and batch through the official PocketBase JS SDK, the way an app with
// users would use them. Run against real PocketBase (`SERVER=pocketbase node --test
// auth_rules_realtime.test.mjs`) to prove each assertion is true PocketBase behaviour, then against
// Syncbase (the default) to prove Syncbase matches it.
//
// Realtime assertions never sleep: each waits on a condition with a deadline, and "this event was
// never delivered" is proved by ordering. A server sends one client's events in commit order, so
// once an event for a later commit has arrived, an event for an earlier commit can no longer come.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EventSource } from 'eventsource';
import PocketBase, { BaseAuthStore, ClientResponseError } from 'pocketbase';
import { startServer, SUPERUSER_EMAIL, SUPERUSER_PASSWORD } from './server.mjs';

// The SDK's realtime service uses the global EventSource, which Node does not have.
globalThis.EventSource = EventSource;

const ID_RE = /^[a-z0-9]{15}$/;
/** How long a realtime event or reconnect may take before the test fails. */
const EVENT_DEADLINE_MS = 10_000;

const PASSWORD = 'users-password-123';
const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';

/** Owners see their notes, everybody sees public ones; only owners write, and only their own. */
const OWNER_OR_PUBLIC = 'owner = @request.auth.id || public = true';
const NOTES_RULES = {
  listRule: OWNER_OR_PUBLIC,
  viewRule: OWNER_OR_PUBLIC,
  createRule: '@request.auth.id != "" && @request.body.owner = @request.auth.id',
  updateRule: 'owner = @request.auth.id',
  deleteRule: 'owner = @request.auth.id',
};

let server;
/** SDK clients: a superuser, two users and a guest, each with its own auth store. */
let su;
let alice;
let bob;
let guest;
const clients = [];

// Request methods by URL path, so a failure can name the call that failed.
const methods = new Map();

/** A new SDK client on `url` with its own auth store, tracked so `after` can disconnect it. */
function client(url = server.url) {
  const pb = new PocketBase(url, new BaseAuthStore());
  // Tests issue concurrent identical requests; the SDK would otherwise cancel all but the last.
  pb.autoCancellation(false);
  pb.beforeSend = (u, options) => {
    methods.set(u, options.method);
    return { url: u, options };
  };
  clients.push(pb);
  return pb;
}

before(async () => {
  server = await startServer();
  su = client();
  alice = client();
  bob = client();
  guest = client();
  await su.collection('_superusers').authWithPassword(SUPERUSER_EMAIL, SUPERUSER_PASSWORD);
});

after(async () => {
  for (const pb of clients) pb.realtime.unsubscribe().catch(() => {});
  for (const pb of clients) pb.realtime.disconnect();
  await server?.stop();
});

/**
 * A test whose unexpected ClientResponseError names the request, status and body, so a failure
 * against Syncbase says exactly which call went wrong and what came back.
 */
function it(name, fn, options = {}) {
  return test(name, options, async (t) => {
    try {
      await fn(t);
    } catch (err) {
      if (!(err instanceof ClientResponseError)) throw err;
      const method = methods.get(err.url.split('?')[0]) ?? '?';
      const url = decodeURIComponent(err.url.replace(/^https?:\/\/[^/]+/, ''));
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

/** Rejects with a message naming `what` unless `promise` settles within `ms`. */
function deadline(promise, what, ms = EVENT_DEADLINE_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Every realtime event one subscription callback received, in arrival order, with a way to
 * wait for one that matches.
 */
class Inbox {
  constructor(name) {
    this.name = name;
    this.events = [];
    this.waiters = new Set();
    this.push = (event) => {
      this.events.push(event);
      for (const w of this.waiters) w(event);
    };
  }

  /** The first event (already received or yet to come) that matches `pred`. */
  waitFor(pred, what) {
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    let waiter;
    const arrived = new Promise((resolve) => {
      waiter = (event) => pred(event) && resolve(event);
      this.waiters.add(waiter);
    });
    return deadline(arrived, `${what} at ${this.name}`).finally(() => this.waiters.delete(waiter));
  }

  /** Waits for `action` on record `id`. */
  waitForRecord(action, id) {
    return this.waitFor((e) => e.action === action && e.record?.id === id, `${action} of ${id}`);
  }

  /** Asserts that no event so far concerned record `id`. */
  assertNever(id, why) {
    const hit = this.events.find((e) => e.record?.id === id);
    assert.equal(hit, undefined, `${this.name} must not receive ${id} (${why}); got ${JSON.stringify(hit)}`);
  }

  /** Events received from index `from` on. */
  since(from) {
    return this.events.slice(from);
  }
}

/** Signs up a user through the public create endpoint, as an app's sign-up form would. */
async function signUp(pb, email) {
  return pb.collection('users').create({ email, password: PASSWORD, passwordConfirm: PASSWORD });
}

describe('sign-up, login and refresh', () => {
  it('a guest signs up as a users record create', async () => {
    const created = await signUp(guest, ALICE);
    assert.match(created.id, ID_RE);
    assert.equal(created.collectionName, 'users');
    assert.equal(created.password, undefined, 'password never exposed');
    assert.equal(created.passwordConfirm, undefined, 'passwordConfirm never exposed');
    assert.equal(created.tokenKey, undefined, 'tokenKey never exposed');
    assert.equal(created.verified, false);
    assert.equal(guest.authStore.isValid, false, 'sign-up does not log in');
    await signUp(guest, BOB);
  });

  it('sign-up with a mismatched passwordConfirm is a 400 naming the field', async () => {
    const err = await rejects(
      guest.collection('users').create({
        email: 'carol@example.com',
        password: PASSWORD,
        passwordConfirm: 'something-else-123',
      }),
      400,
    );
    assert.ok(err.response.data.passwordConfirm, JSON.stringify(err.response.data));
  });

  it('authWithPassword logs a user in and the owner sees their own email', async () => {
    const auth = await alice.collection('users').authWithPassword(ALICE, PASSWORD);
    assert.equal(auth.token.split('.').length, 3, 'token is a JWT');
    assert.equal(auth.record.email, ALICE);
    assert.equal(auth.record.collectionName, 'users');
    assert.equal(auth.record.password, undefined);
    assert.equal(auth.record.tokenKey, undefined);
    assert.equal(alice.authStore.isValid, true);
    assert.equal(alice.authStore.isSuperuser, false);
    assert.equal(alice.authStore.record.id, auth.record.id);
    await bob.collection('users').authWithPassword(BOB, PASSWORD);
  });

  it('authRefresh returns a fresh token for the same record', async () => {
    const before = alice.authStore.record;
    const refreshed = await alice.collection('users').authRefresh();
    assert.equal(refreshed.token.split('.').length, 3);
    assert.equal(refreshed.record.id, before.id);
    assert.equal(refreshed.record.email, ALICE);
    assert.equal(alice.authStore.token, refreshed.token);
    // The refreshed token works.
    const me = await alice.collection('users').getOne(before.id);
    assert.equal(me.email, ALICE);
  });

  it('a wrong password or unknown identity is the same 400', async () => {
    const anon = client();
    const wrongPassword = await rejects(
      anon.collection('users').authWithPassword(ALICE, 'not-the-password'),
      400,
    );
    const unknownUser = await rejects(
      anon.collection('users').authWithPassword('nobody@example.com', PASSWORD),
      400,
    );
    assert.equal(wrongPassword.response.message, unknownUser.response.message, 'no hint which part was wrong');
    assert.deepEqual(wrongPassword.response.data, unknownUser.response.data);
    assert.equal(anon.authStore.isValid, false);
  });

  it('a user cannot view another user, nor see their email in a list', async () => {
    await rejects(bob.collection('users').getOne(alice.authStore.record.id), 404);
    const list = await bob.collection('users').getFullList();
    assert.deepEqual(
      list.map((u) => u.id),
      [bob.authStore.record.id],
      'the default users listRule shows only yourself',
    );
  });
});

describe('API rules: owner, other user, guest, superuser', () => {
  let aPrivate;
  let aPublic;
  let bPrivate;

  before(async () => {
    assert.ok(alice.authStore.isValid && bob.authStore.isValid, 'the auth tests ran first');
    await su.collections.create({
      name: 'notes',
      type: 'base',
      ...NOTES_RULES,
      fields: [
        { name: 'title', type: 'text', required: true },
        { name: 'public', type: 'bool' },
        { name: 'owner', type: 'relation', collectionId: '_pb_users_auth_', maxSelect: 1 },
      ],
    });
    await su.collections.create({
      name: 'vault',
      type: 'base',
      fields: [{ name: 'secret', type: 'text' }],
    });
  });

  it('create: owners create their own notes; guests and impersonation get 400', async () => {
    const aliceId = alice.authStore.record.id;
    const bobId = bob.authStore.record.id;
    aPrivate = await alice.collection('notes').create({ title: 'a private', owner: aliceId });
    aPublic = await alice.collection('notes').create({ title: 'a public', public: true, owner: aliceId });
    bPrivate = await bob.collection('notes').create({ title: 'b private', owner: bobId });
    assert.equal(aPrivate.owner, aliceId);
    assert.equal(bPrivate.owner, bobId);

    await rejects(guest.collection('notes').create({ title: 'guest', owner: aliceId }), 400);
    await rejects(bob.collection('notes').create({ title: 'as alice', owner: aliceId }), 400);
    // A superuser bypasses the rule.
    const bySu = await su.collection('notes').create({ title: 'su for bob', owner: bobId });
    await su.collection('notes').delete(bySu.id);
  });

  it('list: each caller gets only the rows the listRule lets them see', async () => {
    const titles = async (pb) =>
      (await pb.collection('notes').getFullList({ sort: 'title' })).map((n) => n.title);
    assert.deepEqual(await titles(alice), ['a private', 'a public']);
    assert.deepEqual(await titles(bob), ['a public', 'b private']);
    assert.deepEqual(await titles(guest), ['a public']);
    assert.deepEqual(await titles(su), ['a private', 'a public', 'b private']);

    const page = await guest.collection('notes').getList(1, 30);
    assert.equal(page.totalItems, 1, 'totalItems counts only visible rows');
  });

  it('view: a hidden record is a 404, a visible one is returned', async () => {
    assert.equal((await alice.collection('notes').getOne(aPrivate.id)).title, 'a private');
    assert.equal((await su.collection('notes').getOne(aPrivate.id)).title, 'a private');
    assert.equal((await guest.collection('notes').getOne(aPublic.id)).title, 'a public');
    assert.equal((await bob.collection('notes').getOne(aPublic.id)).title, 'a public');
    await rejects(bob.collection('notes').getOne(aPrivate.id), 404);
    await rejects(guest.collection('notes').getOne(aPrivate.id), 404);
    await rejects(guest.collection('notes').getOne(bPrivate.id), 404);
  });

  it('update: only the owner (or a superuser); others get 404 even on a visible record', async () => {
    await rejects(bob.collection('notes').update(aPublic.id, { title: 'by bob' }), 404);
    await rejects(guest.collection('notes').update(aPublic.id, { title: 'by guest' }), 404);
    await rejects(bob.collection('notes').update(aPrivate.id, { title: 'by bob' }), 404);
    const byOwner = await alice.collection('notes').update(aPublic.id, { title: 'a public v2' });
    assert.equal(byOwner.title, 'a public v2');
    const bySu = await su.collection('notes').update(aPublic.id, { title: 'a public' });
    assert.equal(bySu.title, 'a public');
    assert.equal((await guest.collection('notes').getOne(aPublic.id)).title, 'a public');
  });

  it('delete: only the owner (or a superuser); others get 404', async () => {
    const doomed = await alice.collection('notes').create({
      title: 'doomed',
      public: true,
      owner: alice.authStore.record.id,
    });
    await rejects(bob.collection('notes').delete(doomed.id), 404);
    await rejects(guest.collection('notes').delete(doomed.id), 404);
    assert.equal(await alice.collection('notes').delete(doomed.id), true);
    await rejects(alice.collection('notes').getOne(doomed.id), 404);

    const bySu = await bob.collection('notes').create({ title: 'x', owner: bob.authStore.record.id });
    assert.equal(await su.collection('notes').delete(bySu.id), true);
  });

  it('null rules: superusers only, everyone else 403', async () => {
    const kept = await su.collection('vault').create({ secret: 's3cret' });
    for (const pb of [alice, guest]) {
      await rejects(pb.collection('vault').getList(), 403);
      await rejects(pb.collection('vault').getOne(kept.id), 403);
      await rejects(pb.collection('vault').create({ secret: 'mine' }), 403);
      await rejects(pb.collection('vault').update(kept.id, { secret: 'changed' }), 403);
      await rejects(pb.collection('vault').delete(kept.id), 403);
    }
    const all = await su.collection('vault').getFullList();
    assert.deepEqual(all.map((r) => r.secret), ['s3cret']);
  });

  it('a user filter that reads @request or @collection is a 403', async () => {
    await rejects(bob.collection('notes').getList(1, 30, { filter: '@request.auth.id != ""' }), 403);
    await rejects(
      guest.collection('notes').getList(1, 30, { filter: '@collection.vault.secret = "s3cret"' }),
      403,
    );
  });
});

/** Each client's `notes/*` events, subscribed in the realtime tests and kept for the batch tests. */
const inbox = {};

describe('realtime', () => {
  let aliceId;
  let bobId;

  before(async () => {
    assert.ok(alice.authStore.isValid, 'the auth and rules tests ran first');
    aliceId = alice.authStore.record.id;
    bobId = bob.authStore.record.id;
    // The subscribe promise resolves once the server has the subscription, so events from
    // later writes are delivered.
    for (const [name, pb] of Object.entries({ su, alice, bob, guest })) {
      inbox[name] = new Inbox(`${name}'s notes/*`);
      await pb.collection('notes').subscribe('*', inbox[name].push);
    }
  });

  it('create events go to whoever the listRule lets see the record, and only them', async () => {
    const aSecret = await alice.collection('notes').create({ title: 'a secret', owner: aliceId });
    const bSecret = await bob.collection('notes').create({ title: 'b secret', owner: bobId });
    const aLater = await alice.collection('notes').create({ title: 'a later', owner: aliceId });
    const pub = await bob.collection('notes').create({ title: 'b public', public: true, owner: bobId });

    const got = await inbox.alice.waitForRecord('create', aSecret.id);
    assert.deepEqual(got, { action: 'create', record: aSecret }, 'the owner gets the record as created');
    await inbox.su.waitForRecord('create', aSecret.id);
    await inbox.su.waitForRecord('create', bSecret.id);

    // Bob's own record arrives, so alice's earlier secret would have arrived before it.
    assert.deepEqual((await inbox.bob.waitForRecord('create', bSecret.id)).record, bSecret);
    inbox.bob.assertNever(aSecret.id, "alice's private note");
    // Alice's later record arrives, so bob's earlier secret would have arrived before it.
    await inbox.alice.waitForRecord('create', aLater.id);
    inbox.alice.assertNever(bSecret.id, "bob's private note");
    // The public note reaches the guest after every private one was committed.
    assert.deepEqual((await inbox.guest.waitForRecord('create', pub.id)).record, pub);
    for (const hidden of [aSecret, bSecret, aLater]) inbox.guest.assertNever(hidden.id, 'private');
    await inbox.alice.waitForRecord('create', pub.id);
  });

  it('update and delete events carry the record; delete sends it as it was', async () => {
    const note = await alice.collection('notes').create({ title: 'to change', owner: aliceId });
    const updated = await alice.collection('notes').update(note.id, { title: 'changed' });
    await alice.collection('notes').delete(note.id);
    const bobsOwn = await bob.collection('notes').create({ title: 'bob marker', owner: bobId });

    const up = await inbox.alice.waitForRecord('update', note.id);
    assert.deepEqual(up.record, updated);
    const del = await inbox.alice.waitForRecord('delete', note.id);
    assert.equal(del.record.title, 'changed', 'the deleted record as it was');
    assert.equal(del.record.owner, aliceId);
    const order = inbox.alice.events
      .filter((e) => e.record?.id === note.id)
      .map((e) => e.action);
    assert.deepEqual(order, ['create', 'update', 'delete'], 'events arrive in commit order');
    // Bob's later record arrived, so none of the three events on alice's private note will.
    await inbox.bob.waitForRecord('create', bobsOwn.id);
    inbox.bob.assertNever(note.id, "alice's private note");
    await inbox.su.waitForRecord('delete', note.id);
  });

  it('a record that becomes visible by an update is sent as an update', async () => {
    const note = await alice.collection('notes').create({ title: 'soon public', owner: aliceId });
    const shown = await alice.collection('notes').update(note.id, { public: true });
    const got = await inbox.guest.waitForRecord('update', note.id);
    assert.deepEqual(got.record, shown);
    assert.deepEqual(
      inbox.guest.events.filter((e) => e.record?.id === note.id).map((e) => e.action),
      ['update'],
      'the guest never saw the private create',
    );
  });

  it('subscribe(recordId) gets only that record, checked against the viewRule', async () => {
    const watched = await alice.collection('notes').create({ title: 'watched', public: true, owner: aliceId });
    const other = await alice.collection('notes').create({ title: 'other', public: true, owner: aliceId });
    const hidden = await alice.collection('notes').create({ title: 'hidden', owner: aliceId });
    const one = new Inbox(`guest's notes/${watched.id}`);
    const secret = new Inbox(`guest's notes/${hidden.id}`);
    const unsubWatched = await guest.collection('notes').subscribe(watched.id, one.push);
    await guest.collection('notes').subscribe(hidden.id, secret.push);

    await alice.collection('notes').update(other.id, { title: 'other v2' });
    await alice.collection('notes').update(hidden.id, { title: 'hidden v2' });
    const v2 = await alice.collection('notes').update(watched.id, { title: 'watched v2' });

    assert.deepEqual(await one.waitForRecord('update', watched.id), { action: 'update', record: v2 });
    assert.deepEqual(one.events.map((e) => e.record.id), [watched.id], 'only the watched record');
    assert.deepEqual(secret.events, [], 'a record the viewRule hides is never sent');

    // Unsubscribing stops delivery for that topic while the connection's other topics go on.
    const fromAll = inbox.guest.events.length;
    const raw = [];
    const spy = (e) => raw.push(e.data);
    guest.realtime.eventSource.addEventListener(`notes/${watched.id}`, spy);
    await unsubWatched();
    await alice.collection('notes').update(watched.id, { title: 'watched v3' });
    const marker = await alice.collection('notes').create({ title: 'marker', public: true, owner: aliceId });
    await inbox.guest.waitForRecord('create', marker.id);
    const seen = inbox.guest.since(fromAll).map((e) => `${e.action} ${e.record.title}`);
    assert.deepEqual(seen, ['update watched v3', 'create marker'], 'notes/* still delivers');
    assert.deepEqual(one.events.length, 1, 'the unsubscribed callback got nothing more');
    assert.deepEqual(raw, [], 'the server sent nothing more on the unsubscribed topic');
    guest.realtime.eventSource?.removeEventListener(`notes/${watched.id}`, spy);
    assert.ok(guest.realtime.isConnected, 'the connection stays for the other topics');
  });

  it("subscribe('PB_CONNECT') is accepted and called with the client id on each connect", async () => {
    // The SDK sends "PB_CONNECT" to the server as one more topic; apps use it to learn about
    // (re)connects.
    const c = client();
    const connects = new Inbox("c's PB_CONNECT");
    await c.collection('notes').subscribe('*', () => {});
    await c.realtime.subscribe('PB_CONNECT', (e) => connects.push(e));
    c.realtime.disconnect();
    await deadline(c.realtime.connect(), 'the SDK to reconnect');
    const e = await connects.waitFor(() => true, 'PB_CONNECT');
    assert.equal(e.clientId, c.realtime.clientId);
    await c.realtime.unsubscribe();
  });

  it('unsubscribing from every topic disconnects, and nothing arrives any more', async () => {
    const watcher = client();
    await watcher.collection('users').authWithPassword(BOB, PASSWORD);
    const events = new Inbox("watcher's notes/*");
    const unsub = await watcher.collection('notes').subscribe('*', events.push);
    const first = await bob.collection('notes').create({ title: 'w1', owner: bobId });
    await events.waitForRecord('create', first.id);
    await unsub();
    assert.equal(watcher.realtime.isConnected, false, 'the SDK closes an empty connection');
    const second = await bob.collection('notes').create({ title: 'w2', owner: bobId });
    await inbox.bob.waitForRecord('create', second.id);
    events.assertNever(second.id, 'unsubscribed');
  });
});

describe('batch', () => {
  let aliceId;

  before(async () => {
    aliceId = alice.authStore.record.id;
    const settings = await su.settings.update({ batch: { enabled: true, maxRequests: 50 } });
    assert.equal(settings.batch.enabled, true);
  });

  it('is refused while disabled in settings', async () => {
    await su.settings.update({ batch: { enabled: false } });
    const batch = alice.createBatch();
    batch.collection('notes').create({ title: 'nope', owner: aliceId });
    await rejects(batch.send(), 403);
    await su.settings.update({ batch: { enabled: true } });
  });

  it('creates, updates and deletes in one request, under the caller\'s rules', async () => {
    const existing = await alice.collection('notes').create({ title: 'batch old', owner: aliceId });
    const gone = await alice.collection('notes').create({ title: 'batch gone', owner: aliceId });
    const batch = alice.createBatch();
    batch.collection('notes').create({ title: 'batch 1', owner: aliceId });
    batch.collection('notes').create({ title: 'batch 2', public: true, owner: aliceId });
    batch.collection('notes').update(existing.id, { title: 'batch old v2' });
    batch.collection('notes').delete(gone.id);
    const results = await batch.send();

    assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 204]);
    assert.equal(results[0].body.title, 'batch 1');
    assert.match(results[0].body.id, ID_RE);
    assert.equal(results[1].body.public, true);
    assert.equal(results[2].body.title, 'batch old v2');
    const titles = (await alice.collection('notes').getFullList({ filter: 'title ~ "batch"', sort: 'title' }))
      .map((n) => n.title);
    assert.deepEqual(titles, ['batch 1', 'batch 2', 'batch old v2']);
    // Realtime events follow the committed batch.
    await inbox.alice.waitForRecord('create', results[0].body.id);
    await inbox.alice.waitForRecord('delete', gone.id);
  });

  it('a failing third request rolls back the first two and sends no events', async () => {
    const rollbackEvents = new Inbox("alice's notes/* during rollback");
    const unsub = await alice.collection('notes').subscribe('*', rollbackEvents.push);
    const batch = alice.createBatch();
    batch.collection('notes').create({ title: 'rb 1', owner: aliceId });
    batch.collection('notes').create({ title: 'rb 2', owner: aliceId });
    batch.collection('notes').create({ public: true, owner: aliceId }); // title is required
    const err = await rejects(batch.send(), 400);
    const failed = err.response.data?.requests?.['2'];
    assert.ok(failed, `the failing request is named: ${JSON.stringify(err.response.data)}`);
    assert.equal(failed.response?.data?.title?.code, 'validation_required', JSON.stringify(failed));

    const left = await su.collection('notes').getFullList({ filter: 'title ~ "rb "' });
    assert.deepEqual(left, [], 'nothing of the first two requests is left');
    const marker = await alice.collection('notes').create({ title: 'after rollback', owner: aliceId });
    await rollbackEvents.waitForRecord('create', marker.id);
    assert.deepEqual(
      rollbackEvents.events.map((e) => e.record.title),
      ['after rollback'],
      'rolled-back creates are never broadcast',
    );
    await unsub();
  });

  it('a rule failure inside a batch rolls everything back too', async () => {
    const batch = bob.createBatch();
    batch.collection('notes').create({ title: 'rb bob', owner: bob.authStore.record.id });
    batch.collection('notes').create({ title: 'rb as alice', owner: aliceId });
    const err = await rejects(batch.send(), 400);
    const failed = err.response.data?.requests?.['1'];
    assert.equal(failed?.response?.status, 400, `the second request failed: ${JSON.stringify(err.response.data)}`);
    const left = await su.collection('notes').getFullList({ filter: 'title ~ "rb "' });
    assert.deepEqual(left, []);
  });
});

describe('reconnect after the server closes an idle connection', () => {
  const kind = process.env.SERVER ?? 'syncbase';
  const skip =
    kind === 'pocketbase'
      ? 'PocketBase has no --realtime-idle flag (its idle timeout is a fixed 5 minutes)'
      : false;
  let idleServer;

  before(async () => {
    if (skip) return;
    idleServer = await startServer(undefined, { serveArgs: ['--realtime-idle', '1'] });
  });

  after(async () => {
    await idleServer?.stop();
  });

  it('the SDK reconnects and its subscriptions are restored', async () => {
    const admin = client(idleServer.url);
    await admin.collection('_superusers').authWithPassword(SUPERUSER_EMAIL, SUPERUSER_PASSWORD);
    await admin.collections.create({
      name: 'pings',
      type: 'base',
      listRule: '',
      viewRule: '',
      fields: [{ name: 'n', type: 'number' }],
    });
    const sub = client(idleServer.url);
    const events = new Inbox("sub's pings/*");
    const connects = new Inbox("sub's PB_CONNECT");
    let disconnects = 0;
    let onDisconnect = () => {};
    sub.realtime.onDisconnect = () => {
      disconnects++;
      onDisconnect();
    };
    await sub.collection('pings').subscribe('*', events.push);
    // PB_CONNECT listeners run after the SDK has resubmitted the subscriptions on each connect.
    await sub.realtime.subscribe('PB_CONNECT', (e) => connects.push({ clientId: e.clientId }));
    const firstId = sub.realtime.clientId;

    // The idle server closes the stream; wait for a connection with a new client id.
    let n = 0;
    for (let attempt = 1; ; attempt++) {
      const seenConnects = connects.events.length;
      const conn = await connects.waitFor(
        (e) => e.clientId !== firstId && connects.events.indexOf(e) >= seenConnects,
        `a new PB_CONNECT (attempt ${attempt})`,
      );
      assert.notEqual(conn.clientId, firstId);
      // Write while this connection is up; if the server drops it again before the event
      // arrives, try on the next connection (the idle timeout may fire in between).
      const dropped = new Promise((resolve) => {
        onDisconnect = resolve;
      });
      const ping = await admin.collection('pings').create({ n: ++n });
      const outcome = await deadline(
        Promise.race([events.waitForRecord('create', ping.id).then(() => 'delivered'), dropped.then(() => 'dropped')]),
        `ping ${n} or a disconnect`,
      );
      if (outcome === 'delivered' || events.events.some((e) => e.record.id === ping.id)) break;
      assert.ok(attempt < 3, 'the event on a restored subscription never arrived in 3 connections');
    }
    assert.ok(disconnects >= 1, 'the server closed the idle connection at least once');
  }, { skip });
});
