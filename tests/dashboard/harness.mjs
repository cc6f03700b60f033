// Harness of the dashboard's browser tests: starts the real `syncbase` binary (fresh data dir,
// free port, no superuser: the first-run link is read from its output), drives Debian's
// headless Chromium through playwright-core, records every request the pages make, and saves
// screenshots under target/dashboard-screenshots/.
//
// Env:
//   SYNCBASE_BIN   the binary (default <repo>/target/debug/syncbase)
//   CHROMIUM_BIN   the browser (default /usr/bin/chromium)
//   SERVER_LOG     a file to append the nodes' output to (for diagnosing failures)

import { spawn, execFileSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const bin = process.env.SYNCBASE_BIN ?? path.join(repoRoot, 'target', 'debug', 'syncbase');
export const shotsDir = path.join(repoRoot, 'target', 'dashboard-screenshots');
const DEADLINE_MS = 30_000;

export const EMAIL = 'admin@example.com';
export const PASSWORD = 'correct-horse-battery';

/** A port that was free a moment ago. */
export function freePort() {
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

/** Waits until `check()` returns a truthy value (polling), or fails after `ms`. */
export async function waitFor(check, what, ms = DEADLINE_MS) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100)); // poll interval, bounded by the deadline
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

/** Splits a shell command line as the dashboard prints it (words, optional single quotes). */
export function shellWords(line) {
  const out = [];
  const rx = /'((?:[^']|'\\'')*)'|(\S+)/g;
  let m;
  while ((m = rx.exec(line))) out.push(m[1] !== undefined ? m[1].replace(/'\\''/g, "'") : m[2]);
  return out;
}

/**
 * Starts a node: `syncbase serve --http 127.0.0.1:0 --dir <tmp> ...flags` (or exactly `args`
 * when given). Resolves with `{ url, dir, output(), stop() }` once it answers /api/health.
 */
export async function startNode({ flags = [], args = null, dir = null } = {}) {
  if (!existsSync(bin)) throw new Error(`no syncbase binary at ${bin}: run cargo build -p syncbase`);
  const tmp = dir ?? await mkdtemp(path.join(os.tmpdir(), 'sb-dash-'));
  const argv = args ?? ['serve', '--http', '127.0.0.1:0', '--dir', tmp, ...flags];
  const child = spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SYNCBASE_LOG: 'warn' } });
  let out = '';
  const log = process.env.SERVER_LOG ? createWriteStream(process.env.SERVER_LOG, { flags: 'a' }) : null;
  child.stdout.on('data', (b) => { out += b; log?.write(b); });
  child.stderr.on('data', (b) => { out += b; log?.write(b); });
  let exited = null;
  child.on('exit', (code, sig) => { exited = `exit ${code ?? sig}`; });
  const stop = async () => {
    if (exited === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(t);
    }
    if (!dir) await rm(tmp, { recursive: true, force: true });
  };
  try {
    const url = await waitFor(() => {
      if (exited) throw new Error(`node exited early (${exited}):\n${out}`);
      const m = /Server started at http:\/\/(\S+)/.exec(out);
      return m && `http://${m[1]}`;
    }, 'the start line');
    await waitFor(async () => (await fetch(`${url}/api/health`)).ok, `${url}/api/health`);
    return { url, dir: tmp, child, output: () => out, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** The first-run link a node printed (`.../_/#/pbinstall/TOKEN`). */
export function installLink(node) {
  const m = /(http:\/\/\S+\/_\/#\/pbinstall\/\S+)/.exec(node.output());
  if (!m) throw new Error(`no install link in the node's output:\n${node.output()}`);
  return m[1];
}

/** A superuser token straight from the API (for setting up data the test does not click). */
export async function apiToken(url, email = EMAIL, password = PASSWORD) {
  const res = await fetch(`${url}/api/collections/_superusers/auth-with-password`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ identity: email, password }),
  });
  if (!res.ok) throw new Error(`auth failed: ${res.status} ${await res.text()}`);
  return (await res.json()).token;
}

export async function apiCall(url, token, method, p, body) {
  const res = await fetch(`${url}${p}`, {
    method, headers: { 'content-type': 'application/json', Authorization: token }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/**
 * Launches headless Chromium with the flags CI needs and a fresh profile. `allowed` are the
 * origins the pages may reach (the nodes); every request is recorded, and anything else is
 * aborted and reported by `outside()`.
 */
export async function launchBrowser(allowed, { width = 1280, height = 860 } = {}) {
  const profile = await mkdtemp(path.join(os.tmpdir(), 'sb-dash-chromium-'));
  // A persistent context is how playwright takes --user-data-dir: a fresh profile per run.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width, height },
    acceptDownloads: true,
  });
  const requests = [];
  const problems = [];
  await context.route('**/*', (route) => {
    const u = route.request().url();
    requests.push(u);
    const ok = u.startsWith('data:') || u.startsWith('blob:') || allowed.some((o) => u === o || u.startsWith(`${o}/`));
    return ok ? route.continue() : route.abort('blockedbyclient');
  });
  const watch = (page) => {
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (msg) => {
      const t = msg.text();
      // 4xx answers are expected (validation errors); script errors and CSP refusals are not.
      if (msg.type() === 'error' && !/status of 4\d\d/.test(t)) problems.push(`console: ${t}`);
    });
  };
  context.on('page', watch);
  for (const p of context.pages()) watch(p);
  const page = context.pages()[0] ?? await context.newPage();
  return {
    context,
    page,
    requests,
    problems,
    /** Requests that went anywhere but the allowed origins. */
    outside: () => requests.filter((u) => !(u.startsWith('data:') || u.startsWith('blob:') || allowed.some((o) => u === o || u.startsWith(`${o}/`)))),
    allow: (origin) => allowed.push(origin),
    async shot(name, p = page) {
      mkdirSync(shotsDir, { recursive: true });
      await p.screenshot({ path: path.join(shotsDir, `${name}.png`), fullPage: false });
    },
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** The field-merge resolver component from plugins/ (built once with scripts/build-plugin). */
export function shippedPlugin(name = 'field-merge') {
  const out = path.join(repoRoot, 'target', 'plugins', `${name}.wasm`);
  if (!existsSync(out)) {
    execFileSync(path.join(repoRoot, 'scripts', 'build-plugin'), [path.join(repoRoot, 'plugins', name)], { stdio: 'inherit' });
  }
  return out;
}
