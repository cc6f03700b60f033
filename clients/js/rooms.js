// Syncbase rooms: a small client for `GET /api/rooms/{collection}/{recordId}`.
//
// An ES module with no dependencies and no build step. It works in browsers and in Node 22+
// (global WebSocket); on older Node pass a WebSocket implementation (e.g. the `ws` package) as
// the `WebSocket` option. Use it beside the PocketBase JS SDK: pass `token: () =>
// pb.authStore.token` and every (re)connection signs in with the current token.
//
//   import { joinRoom } from './rooms.js';
//   const room = joinRoom('http://127.0.0.1:8090', 'docs', recordId, {
//     token: () => pb.authStore.token,
//     presence: { name: 'Ann' },
//   });
//   room.onMessage((m) => console.log(m.offset, m.sender.userId, m.payload));
//   room.onPresence((members) => console.log([...members.values()]));
//   room.onStatus((s) => { if (s.state === 'joined' && s.recovering && !s.recovered) reload(); });
//   const { offset } = await room.send({ text: 'hello' });
//
// Delivery: the server stamps every message with an offset (1, 2, 3, ... per room) and an
// epoch (the owner's term), and delivers it to every member in that one order. The helper
// remembers the position of the last message it delivered; when the connection drops (or the
// server says "reconnect": close 4000, or 4008 for a client that fell behind) it reconnects
// with backoff and asks for exactly what it missed. `onStatus` then reports `recovered: true`,
// and the missed messages arrive through `onMessage` before new ones, each once. If the room
// could not replay them (its history was trimmed or lost) it reports `recovered: false`: reload
// your state from the record and carry on from the new position.
//
// `send` resolves with `{offset, epoch}` once the message is stored; it rejects with an error
// whose `code` is the server's (`forbidden`, `payload_too_large`, `rejected`, ...) or
// `connection_lost` when the socket dropped before the answer (the message may or may not have
// been stored: it will show up through `onMessage` after recovery if it was).

/** Close codes the server uses. */
export const CLOSE = Object.freeze({
  RECONNECT: 4000,
  TOO_SLOW: 4008,
  BAD_REQUEST: 4400,
  UNAUTHORIZED: 4401,
  FORBIDDEN: 4403,
  NOT_FOUND: 4404,
  UNAVAILABLE: 4503,
});

/** Codes after which reconnecting as is cannot help. */
const FINAL = new Set([1008, 1009, CLOSE.BAD_REQUEST, CLOSE.UNAUTHORIZED, CLOSE.FORBIDDEN, CLOSE.NOT_FOUND]);

/** An error from the room (a refused send, a refused join, a lost connection). */
export class RoomError extends Error {
  constructor(code, message, detail = {}) {
    super(message);
    this.name = 'RoomError';
    this.code = code;
    Object.assign(this, detail);
  }
}

/**
 * Joins a room and keeps it joined until `close()`.
 *
 * @param {string} baseUrl  the node's URL, e.g. `http://127.0.0.1:8090`
 * @param {string} collection  collection name or id
 * @param {string} recordId  the record the room belongs to
 * @param {object} [options]
 * @param {string|(() => string)} [options.token]  auth token, or a function returning the current one
 * @param {object} [options.presence]  this client's initial presence state
 * @param {{offset: number, epoch: string}} [options.position]  resume from a saved position
 * @param {typeof WebSocket} [options.WebSocket]  WebSocket implementation (default: the global)
 * @param {number} [options.minDelay=250]  first reconnect delay, ms (doubles up to maxDelay)
 * @param {number} [options.maxDelay=5000]  longest reconnect delay, ms
 * @returns {Room}
 */
export function joinRoom(baseUrl, collection, recordId, options = {}) {
  return new Room(baseUrl, collection, recordId, options);
}

export class Room {
  constructor(baseUrl, collection, recordId, options = {}) {
    const url = new URL(
      `api/rooms/${encodeURIComponent(collection)}/${encodeURIComponent(recordId)}`,
      baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`,
    );
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    this.url = url.toString();
    this.options = { minDelay: 250, maxDelay: 5000, ...options };
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (!this.WebSocket) throw new Error('no WebSocket: pass one as options.WebSocket');
    /** The last delivered position `{offset, epoch}` (offset 0: nothing yet). */
    this.position = options.position ? { ...options.position } : null;
    /** Members present, by client id: `{clientId, userId, collectionName, state}`. */
    this.members = new Map();
    /** This connection's client id (changes on every reconnect). */
    this.clientId = null;
    this.state = 'connecting';
    this._presence = options.presence ?? null;
    this._handlers = { message: new Set(), presence: new Set(), status: new Set(), error: new Set() };
    this._pending = new Map();
    this._nextRef = 1;
    this._delay = this.options.minDelay;
    this._closed = false;
    this._socket = null;
    this._timer = null;
    this.joined = new Promise((resolve, reject) => {
      this._joinedOnce = { resolve, reject };
    });
    // A rejection nobody awaits must not crash Node: callers that care await `joined`.
    this.joined.catch(() => {});
    this._connect();
  }

  /** `fn(message)` for every message, in offset order, each once. Returns an unsubscribe function. */
  onMessage(fn) {
    return this._on('message', fn);
  }

  /** `fn(members, event)` on every presence change; `event.action` is sync, join, leave or state. */
  onPresence(fn) {
    return this._on('presence', fn);
  }

  /** `fn({state, recovering, recovered, missed, code, reason})` on connection changes. */
  onStatus(fn) {
    return this._on('status', fn);
  }

  /** `fn(error)` for errors not tied to a `send` (a refused join, a bad frame). */
  onError(fn) {
    return this._on('error', fn);
  }

  /** Sends a payload (a JSON object); resolves `{offset, epoch}` once the room stored it. */
  send(payload) {
    if (this._closed) return Promise.reject(new RoomError('closed', 'the room was closed'));
    const ref = this._nextRef++;
    return new Promise((resolve, reject) => {
      this._pending.set(ref, { resolve, reject });
      if (!this._write({ type: 'send', payload, ref })) {
        this._pending.delete(ref);
        reject(new RoomError('not_connected', 'not connected to the room; retry after it rejoins'));
      }
    });
  }

  /** Sets this client's presence state (kept and re-sent on reconnect). */
  setPresence(state) {
    this._presence = state;
    this._write({ type: 'presence.set', state });
  }

  /** Drops the connection and reconnects at once (recovering from the current position). */
  reconnect() {
    if (this._socket) this._socket.close(1000);
  }

  /** Leaves the room for good. */
  close() {
    this._closed = true;
    clearTimeout(this._timer);
    this._setState('closed', {});
    if (this._socket) {
      try {
        this._socket.send(JSON.stringify({ type: 'leave' }));
      } catch {
        // Not open: nothing to tell.
      }
      this._socket.close(1000);
    }
    this._failPending('closed', 'the room was closed');
  }

  _on(kind, fn) {
    this._handlers[kind].add(fn);
    return () => this._handlers[kind].delete(fn);
  }

  _emit(kind, ...args) {
    for (const fn of this._handlers[kind]) {
      try {
        fn(...args);
      } catch (err) {
        // A throwing handler must not break delivery to the others.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  _setState(state, detail) {
    this.state = state;
    this._emit('status', { state, ...detail });
  }

  _write(frame) {
    const s = this._socket;
    if (!s || s.readyState !== 1 || this.state !== 'joined') return false;
    s.send(JSON.stringify(frame));
    return true;
  }

  _token() {
    const t = this.options.token;
    return typeof t === 'function' ? t() : t;
  }

  _connect() {
    if (this._closed) return;
    const socket = new this.WebSocket(this.url);
    this._socket = socket;
    socket.onopen = () => {
      const join = { type: 'join' };
      const token = this._token();
      if (token) join.token = token;
      if (this.position) {
        join.offset = this.position.offset;
        join.epoch = this.position.epoch;
      }
      if (this._presence) join.presence = this._presence;
      socket.send(JSON.stringify(join));
    };
    socket.onmessage = (ev) => {
      if (socket !== this._socket) return;
      let frame;
      try {
        frame = JSON.parse(typeof ev.data === 'string' ? ev.data : String(ev.data));
      } catch {
        return;
      }
      this._frame(frame);
    };
    socket.onclose = (ev) => {
      if (socket !== this._socket) return;
      this._socket = null;
      this._failPending('connection_lost', 'the connection dropped before the room answered');
      if (this._closed) return;
      const code = ev.code;
      if (FINAL.has(code)) {
        this._closed = true;
        const err = new RoomError(`closed_${code}`, ev.reason || `the room refused the connection (${code})`, {
          closeCode: code,
        });
        this._joinedOnce.reject(err);
        this._setState('closed', { code, reason: ev.reason });
        this._emit('error', err);
        return;
      }
      this._setState('reconnecting', { code, reason: ev.reason });
      const jitter = 0.5 + Math.random() / 2;
      this._timer = setTimeout(() => this._connect(), this._delay * jitter);
      this._delay = Math.min(this._delay * 2, this.options.maxDelay);
    };
    // Errors are followed by a close event, which decides what happens next.
    socket.onerror = () => {};
  }

  _frame(f) {
    switch (f.type) {
      case 'joined':
        this.clientId = f.clientId;
        this._delay = this.options.minDelay;
        // Recovered or not, what follows continues from the room's position: missed messages
        // (when recovered) move it forward as they arrive.
        if (!f.recovered || !this.position) this.position = { offset: f.offset, epoch: f.epoch };
        this.members = new Map();
        this._setState('joined', {
          recovering: f.recovering,
          recovered: f.recovered,
          missed: f.missed,
          offset: f.offset,
          epoch: f.epoch,
        });
        this._joinedOnce.resolve(this);
        break;
      case 'message':
        // Exactly once, in order: anything at or before the position was delivered already.
        if (this.position && f.offset <= this.position.offset && f.epoch === this.position.epoch) break;
        this.position = { offset: f.offset, epoch: f.epoch };
        this._emit('message', f);
        break;
      case 'presence':
        this._presenceFrame(f);
        break;
      case 'ack': {
        const p = this._pending.get(f.ref);
        if (p) {
          this._pending.delete(f.ref);
          p.resolve({ offset: f.offset, epoch: f.epoch });
        }
        break;
      }
      case 'error': {
        const err = new RoomError(f.code, f.message);
        const p = f.ref !== undefined ? this._pending.get(f.ref) : undefined;
        if (p) {
          this._pending.delete(f.ref);
          p.reject(err);
        } else {
          this._emit('error', err);
        }
        break;
      }
      default:
        break;
    }
  }

  _presenceFrame(f) {
    if (f.action === 'sync') {
      this.members = new Map(f.members.map((m) => [m.clientId, m]));
    } else if (f.action === 'leave') {
      this.members.delete(f.member.clientId);
    } else if (f.member) {
      this.members.set(f.member.clientId, f.member);
    }
    this._emit('presence', this.members, f);
  }

  _failPending(code, message) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) p.reject(new RoomError(code, message));
  }
}
