// Settings and rate limits through the official PocketBase JS SDK. The same assertions run
// against real PocketBase (`SERVER=pocketbase node --test settings_limits.test.mjs`), so every
// shape, code and message below is PocketBase's own.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import PocketBase, { ClientResponseError } from 'pocketbase';
import { startServer, SUPERUSER_EMAIL, SUPERUSER_PASSWORD } from './server.mjs';

let server;
let su;

before(async () => {
  server = await startServer();
  su = new PocketBase(server.url);
  su.autoCancellation(false);
  await su.collection('_superusers').authWithPassword(SUPERUSER_EMAIL, SUPERUSER_PASSWORD);
});

after(async () => {
  await server?.stop();
});

/** Awaits `promise`, expects a ClientResponseError with `status`, and returns its body. */
async function rejects(promise, status) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ClientResponseError, `expected ClientResponseError, got ${err}`);
    assert.equal(err.status, status, JSON.stringify(err.response));
    return err.response;
  }
  assert.fail(`expected a ${status} rejection, but the request succeeded`);
}

/** PocketBase's settings sections and the keys of each, as its API shows them. */
const SHAPE = {
  superuserIPs: null,
  smtp: ['enabled', 'port', 'host', 'username', 'authMethod', 'tls', 'localName'],
  backups: ['cron', 'cronMaxKeep', 's3'],
  s3: ['enabled', 'bucket', 'region', 'endpoint', 'accessKey', 'forcePathStyle'],
  meta: ['accentColor', 'appName', 'appURL', 'senderName', 'senderAddress', 'hideControls'],
  rateLimits: ['rules', 'excludedIPs', 'enabled'],
  trustedProxy: ['headers', 'useLeftmostIP'],
  batch: ['enabled', 'maxRequests', 'timeout', 'maxBodySize'],
  logs: ['maxDataSize', 'maxDays', 'minLevel', 'logIP', 'logAuthId'],
};

function assertShape(settings) {
  assert.deepEqual(Object.keys(settings).sort(), Object.keys(SHAPE).sort());
  for (const [section, keys] of Object.entries(SHAPE)) {
    if (keys) assert.deepEqual(Object.keys(settings[section]).sort(), [...keys].sort(), section);
  }
}

describe('settings', () => {
  test('a fresh install has PocketBase\'s sections and default rate limit rules', async () => {
    const s = await su.settings.getAll();
    assertShape(s);
    assert.equal(s.rateLimits.enabled, false);
    assert.deepEqual(s.rateLimits.rules, [
      { label: '*:auth', audience: '', duration: 3, maxRequests: 2 },
      { label: '*:create', audience: '', duration: 5, maxRequests: 20 },
      { label: '/api/batch', audience: '', duration: 1, maxRequests: 3 },
      { label: '/api/', audience: '', duration: 10, maxRequests: 300 },
    ]);
    assert.deepEqual(s.batch, { enabled: false, maxRequests: 50, timeout: 3, maxBodySize: 0 });
  });

  test('unknown keys are dropped and secrets are never shown', async () => {
    const s = await su.settings.update({
      junk: 'x'.repeat(1000),
      meta: { appName: 'Parity', unknown: 1 },
      smtp: { password: 'smtp-secret', host: 'mail.example.com' },
    });
    assertShape(s);
    assert.equal(s.meta.appName, 'Parity');
    assert.equal(s.smtp.host, 'mail.example.com');
    assert.equal(s.smtp.password, undefined);
    assertShape(await su.settings.getAll());
  });

  test('a value of the wrong type refuses the whole body', async () => {
    for (const bad of [{ meta: { appName: 5 } }, { batch: { maxRequests: '5' } }, { batch: { maxRequests: 1.5 } }]) {
      const body = await rejects(su.settings.update(bad), 400);
      assert.deepEqual(body, {
        status: 400,
        message: 'An error occurred while loading the submitted data.',
        data: {},
      });
    }
    assert.equal((await su.settings.getAll()).meta.appName, 'Parity');
  });

  test('invalid values answer with nested validation errors', async () => {
    const body = await rejects(
      su.settings.update({
        meta: { appName: '', senderAddress: 'nope' },
        smtp: { port: -1 },
        rateLimits: { rules: [{ label: 'bad label!', maxRequests: 0, duration: 1 }] },
        superuserIPs: ['nope'],
      }),
      400,
    );
    assert.equal(body.message, 'An error occurred while saving the new settings.');
    assert.deepEqual(body.data, {
      meta: {
        appName: { code: 'validation_required', message: 'Cannot be blank.' },
        senderAddress: { code: 'validation_is_email', message: 'Must be a valid email address.' },
      },
      smtp: {
        port: {
          code: 'validation_min_greater_equal_than_required',
          message: 'Must be no less than 0.',
          params: { threshold: 0 },
        },
      },
      rateLimits: {
        rules: {
          0: {
            label: { code: 'validation_match_invalid', message: 'Must be in a valid format.' },
            maxRequests: { code: 'validation_required', message: 'Cannot be blank.' },
          },
        },
      },
      superuserIPs: { 0: { code: 'validation_invlaid_ip_or_subnet', message: 'Invalid IP or CIDR subnet.' } },
    });
  });
});

describe('rate limits', () => {
  test('logins over the *:auth rule answer 429', async () => {
    await su.settings.update({
      rateLimits: {
        enabled: true,
        rules: [
          { label: '*:auth', maxRequests: 2, duration: 3600 },
          { label: '/api/', maxRequests: 10000, duration: 3600 },
        ],
      },
    });
    const guest = new PocketBase(server.url);
    for (const password of ['wrong-one', 'wrong-two']) {
      await rejects(guest.collection('users').authWithPassword('nobody@example.com', password), 400);
    }
    const body = await rejects(guest.collection('users').authWithPassword('nobody@example.com', 'wrong-3'), 429);
    assert.deepEqual(body, { status: 429, message: 'Too Many Requests.', data: {} });
    // Superusers are never limited.
    await su.settings.update({ rateLimits: { enabled: false } });
  });
});
