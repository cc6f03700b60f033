// The rooms JS helper (clients/js/rooms.js) against a real Syncbase node, beside the official
// PocketBase SDK: join, send, messages in one order, presence, refusals, and automatic
// reconnection with recovery by position. PocketBase has no rooms, so against the oracle
// (SERVER=pocketbase) this file is skipped.
//
// Node 20 has no global WebSocket: the helper takes the `ws` package's, as it documents.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import PocketBase, { BaseAuthStore } from 'pocketbase';
import { serverKind, startServer, SUPERUSER_EMAIL, SUPERUSER_PASSWORD } from './server.mjs';
import { CLOSE, joinRoom } from '../../clients/js/rooms.js';

const SKIP = serverKind().kind === 'pocketbase' ? 'rooms are a Syncbase feature' : false;
const DEADLINE_MS = 15_000;

/** Resolves once `cond()` holds, checking every 10 ms; fails after the deadline. */
async function until(what, cond) {
  const deadline = Date.now() + DEADLINE_MS;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10)); // poll interval of a deadline-bounded wait
  }
}

/** Joins with a recorder of everything the helper reports. */
function recorded(url, id, options = {}) {
  const room = joinRoom(url, 'docs', id, { WebSocket, ...options });
  const log = { messages: [], statuses: [], presence: [] };
  room.onMessage((m) => log.messages.push(m));
  room.onStatus((s) => log.statuses.push(s));
  room.onPresence((members, ev) => log.presence.push(ev.action));
  return { room, log };
}

describe('rooms helper', { skip: SKIP }, () => {
  let server;
  let doc;
  let alice;
  let bob;
  const open = [];

  before(async () => {
    server = await startServer();
    const su = new PocketBase(server.url, new BaseAuthStore());
    await su.collection('_superusers').authWithPassword(SUPERUSER_EMAIL, SUPERUSER_PASSWORD);
    await su.collections.create({
      name: 'docs',
      viewRule: '',
      updateRule: "@request.auth.id != ''",
      fields: [{ name: 'title', type: 'text' }],
    });
    doc = (await su.collection('docs').create({ title: 'plan' })).id;
    const login = async (email) => {
      await su.collection('users').create({ email, password: 'secret-123', passwordConfirm: 'secret-123' });
      const pb = new PocketBase(server.url, new BaseAuthStore());
      await pb.collection('users').authWithPassword(email, 'secret-123');
      return pb;
    };
    alice = await login('alice@example.com');
    bob = await login('bob@example.com');
  });

  after(async () => {
    for (const r of open) r.close();
    await server?.stop();
  });

  test('members see one order, sends resolve with their offsets, presence on every side', async () => {
    const a = recorded(server.url, doc, { token: () => alice.authStore.token, presence: { name: 'Alice' } });
    const b = recorded(server.url, doc, { token: () => bob.authStore.token });
    open.push(a.room, b.room);
    await Promise.all([a.room.joined, b.room.joined]);
    await until('both present on both sides', () => a.room.members.size === 2 && b.room.members.size === 2);
    const alicePresent = [...b.room.members.values()].find((m) => m.userId === alice.authStore.record.id);
    assert.deepEqual(alicePresent.state, { name: 'Alice' });

    const acks = await Promise.all([
      a.room.send({ text: 'one' }),
      b.room.send({ text: 'two' }),
      a.room.send({ text: 'three' }),
    ]);
    await until('three messages each', () => a.log.messages.length === 3 && b.log.messages.length === 3);
    assert.deepEqual(a.log.messages.map((m) => m.offset), [1, 2, 3]);
    assert.deepEqual(b.log.messages, a.log.messages, 'one order for everyone');
    assert.deepEqual(acks.map((x) => x.offset).sort(), [1, 2, 3]);
    for (const [i, text] of ['one', 'two', 'three'].entries()) {
      const m = a.log.messages.find((x) => x.offset === acks[i].offset);
      assert.equal(m.payload.text, text);
    }
    assert.deepEqual(b.room.position, { offset: 3, epoch: a.log.messages[2].epoch });

    b.room.setPresence({ typing: true });
    await until('Bob typing, seen by Alice', () =>
      [...a.room.members.values()].some((m) => m.state && m.state.typing === true),
    );
    b.room.close();
    await until('Bob gone', () => a.room.members.size === 1);
    assert.equal(b.room.state, 'closed');
  });

  test('a dropped connection reconnects by itself and recovers exactly what it missed', async () => {
    const sockets = [];
    class Tracked extends WebSocket {
      constructor(...args) {
        super(...args);
        sockets.push(this);
      }
    }
    const a = recorded(server.url, doc, { token: () => alice.authStore.token });
    const b = recorded(server.url, doc, { token: () => bob.authStore.token, WebSocket: Tracked, minDelay: 400 });
    open.push(a.room, b.room);
    await Promise.all([a.room.joined, b.room.joined]);
    const start = b.room.position.offset;
    await a.room.send({ n: 1 });
    await until('n=1 on Bob', () => b.log.messages.length === 1);

    sockets.at(-1).terminate(); // the network drops: no close frame at all
    await until('Bob reconnecting', () => b.room.state === 'reconnecting');
    for (const n of [2, 3, 4]) await a.room.send({ n });
    await until('Bob back', () => b.room.state === 'joined');
    await a.room.send({ n: 5 });
    await until('everything on Bob', () => b.log.messages.length === 5);

    const rejoin = b.log.statuses.filter((s) => s.state === 'joined').at(-1);
    assert.equal(rejoin.recovering, true);
    assert.equal(rejoin.recovered, true);
    assert.equal(rejoin.missed, 3);
    assert.deepEqual(b.log.messages.map((m) => m.payload.n), [1, 2, 3, 4, 5], 'each once, in order');
    assert.deepEqual(
      b.log.messages.map((m) => m.offset),
      [1, 2, 3, 4, 5].map((k) => start + k),
    );
    assert.equal(sockets.length, 2, 'one reconnection');
  });

  test('what cannot be recovered or allowed is reported, not hidden', async () => {
    // A position the room never had: joined, but told recovery was impossible.
    const lost = recorded(server.url, doc, { position: { offset: 999, epoch: 'gone' } });
    open.push(lost.room);
    await lost.room.joined;
    const status = lost.log.statuses.find((s) => s.state === 'joined');
    assert.equal(status.recovering, true);
    assert.equal(status.recovered, false);
    assert.ok(lost.room.position.offset < 999, 'the helper moves to the room position');

    // A guest may join (view rule "") but not send (update rule needs a user).
    await assert.rejects(lost.room.send({ text: 'hi' }), (err) => err.code === 'forbidden');
    await assert.rejects(lost.room.send({ text: 'x'.repeat(70_000) }), (err) => err.code === 'payload_too_large');

    // A missing record: the join is refused for good (no reconnect loop).
    const missing = joinRoom(server.url, 'docs', 'nosuchrecord123', { WebSocket });
    await assert.rejects(missing.joined, (err) => err.closeCode === CLOSE.NOT_FOUND);
    assert.equal(missing.state, 'closed');
  });
});
