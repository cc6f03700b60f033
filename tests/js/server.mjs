// Starts one server (Syncbase, or real PocketBase when SERVER=pocketbase) in a temp dir on a
// free port, with a superuser, and tears it down again. Shared by the JS test files.
//
// Env:
//   SERVER          "syncbase" (default) or "pocketbase"
//   SYNCBASE_BIN    path to the syncbase binary (default <repo>/target/debug/syncbase)
//   POCKETBASE_BIN  path to the pocketbase binary (default "pocketbase" on PATH)
//   SYNCBASE_JS_SYNC=1  run Syncbase with replication on (an embedded nats-server per server)
//   SERVER_LOG      a file to append the server's stdout and stderr to (for diagnosing failures)

import { spawn, execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { access, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export const SUPERUSER_EMAIL = 'root@example.com';
export const SUPERUSER_PASSWORD = 'correct-horse-battery';

const STARTUP_DEADLINE_MS = 30_000;
const SHUTDOWN_DEADLINE_MS = 10_000;

/** Which server this run targets (default: env SERVER), and the binary that runs it. */
export function serverKind(kind = process.env.SERVER ?? 'syncbase') {
  if (kind === 'pocketbase') {
    return { kind, bin: process.env.POCKETBASE_BIN ?? 'pocketbase' };
  }
  if (kind === 'syncbase') {
    return {
      kind,
      bin: process.env.SYNCBASE_BIN ?? path.join(repoRoot, 'target', 'debug', 'syncbase'),
    };
  }
  throw new Error(`SERVER must be "syncbase" or "pocketbase", not ${JSON.stringify(kind)}`);
}

/** A port that was free a moment ago (PocketBase cannot report the port it bound for :0). */
async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts a server (`which`: "syncbase" or "pocketbase", default env SERVER) and resolves once
 * `/api/health` answers 200. `serveArgs` are appended to the `serve` command line (flags only one
 * of the servers knows, e.g. Syncbase's `--realtime-idle`).
 * `dataDir`: serve this data directory, which the caller owns (`stop()` leaves it; for
 * PocketBase give each its own parent dir, where it keeps `pb_migrations`).
 * Returns `{ url, kind, stop }`; `stop()` kills the process and removes the temp dir.
 */
export async function startServer(which, { serveArgs = [], dataDir: ownDir } = {}) {
  const { kind, bin } = serverKind(which);
  if (kind === 'syncbase') {
    await access(bin).catch(() => {
      throw new Error(`no syncbase binary at ${bin}: run \`cargo build -p syncbase\` or set SYNCBASE_BIN`);
    });
  }
  const dir = ownDir ? null : await mkdtemp(path.join(os.tmpdir(), `sb-js-${kind}-`));
  const dataDir = ownDir ?? path.join(dir, 'data');
  let child;
  const stop = async () => {
    if (child) await killChild(child);
    if (dir) await rm(dir, { recursive: true, force: true });
  };
  try {
    await execFileP(bin, ['superuser', 'upsert', SUPERUSER_EMAIL, SUPERUSER_PASSWORD, '--dir', dataDir]);
    // Syncbase binds port 0 itself and reports the port; PocketBase prints ":0" back, so it gets
    // a port picked here.
    const port = kind === 'pocketbase' ? await freePort() : 0;
    // SYNCBASE_JS_SYNC=1: the node replicates (embedded nats-server), so the suite checks that
    // the SDK sees no difference on a replicating node (schema changes go through the log).
    const extra = kind === 'syncbase' && process.env.SYNCBASE_JS_SYNC === '1'
      ? ['--sync', '--node-id', 'js', '--nats-listen', `127.0.0.1:${await freePort()}`]
      : [];
    child = spawn(bin, ['serve', '--http', `127.0.0.1:${port}`, '--dir', dataDir, ...extra, ...serveArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (process.env.SERVER_LOG) {
      const log = createWriteStream(process.env.SERVER_LOG, { flags: 'a' });
      child.stdout.pipe(log);
      child.stderr.pipe(log);
    }
    const started = await waitForStartLine(child, STARTUP_DEADLINE_MS);
    const parsed = new URL(started);
    const url = `http://127.0.0.1:${parsed.port && parsed.port !== '0' ? parsed.port : port}`;
    await waitForHealth(url, STARTUP_DEADLINE_MS);
    if (extra.length) await waitForUsersSeed(url, STARTUP_DEADLINE_MS);
    return { url, kind, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Resolves with the URL from the `Server started at http://...` line, rejects if the process
 * dies first. Its listeners stay attached, so the pipes keep draining for the server's life.
 */
function waitForStartLine(child, deadlineMs) {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(
      () => fail(new Error(`no "Server started at" line within ${deadlineMs} ms`)),
      deadlineMs,
    );
    const onExit = (code, signal) =>
      fail(new Error(`server exited early (code ${code}, signal ${signal})`));
    function fail(err) {
      cleanup();
      err.message += `\nstdout:\n${stdout}\nstderr:\n${stderr}`;
      reject(err);
    }
    function cleanup() {
      clearTimeout(timer);
      child.off('exit', onExit);
    }
    child.on('exit', onExit);
    // Only the start-up output is kept for the error message; later output is drained.
    const keep = (acc, b) => (acc.length < 64 * 1024 ? acc + b : acc);
    child.stderr.on('data', (b) => {
      stderr = keep(stderr, b);
    });
    child.stdout.on('data', (b) => {
      stdout = keep(stdout, b);
      const m = /Server started at (http:\/\/[^\s/]+)/.exec(stdout);
      if (m) {
        cleanup();
        resolve(m[1]);
      }
    });
  });
}

async function waitForHealth(url, deadlineMs) {
  const deadline = Date.now() + deadlineMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${url}/api/health`);
      if (res.status === 200) return;
      last = `status ${res.status}`;
    } catch (err) {
      last = err.message;
    }
    await new Promise((r) => setTimeout(r, 50)); // poll interval, not synchronisation
  }
  throw new Error(`${url}/api/health not healthy within ${deadlineMs} ms (last: ${last})`);
}

/**
 * A replicating node refuses logins to `users` (503) until it has folded the cluster's users
 * collection from the log; wait for that the way a client would: a login attempt with no
 * valid credentials answers 400 once the node is ready.
 */
async function waitForUsersSeed(url, deadlineMs) {
  const deadline = Date.now() + deadlineMs;
  let last;
  while (Date.now() < deadline) {
    const res = await fetch(`${url}/api/collections/users/auth-with-password`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ identity: 'nobody@example.com', password: 'not-a-password' }),
    });
    if (res.status !== 503) return;
    last = await res.text();
    await new Promise((r) => setTimeout(r, 50)); // poll interval, not synchronisation
  }
  throw new Error(`${url} never received its users collection (last: ${last})`);
}

async function killChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), SHUTDOWN_DEADLINE_MS);
  await exited;
  clearTimeout(timer);
}
