// The auth flows apps build on, driven with the official JS SDK the way an app would: sign-up
// with email verification, password reset, email change, one-time passwords, MFA (password then
// OTP), the OAuth2 code flow, and the settings' test email. Mails are caught by a local SMTP
// server the test starts (npm smtp-server); OAuth2 runs against a local OpenID provider
// (npm oauth2-mock-server). Run against real PocketBase (`SERVER=pocketbase node --test
// auth_flows.test.mjs`) to prove each assertion is PocketBase's behaviour, then against
// Syncbase (the default) to prove Syncbase matches it.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { EventSource } from 'eventsource';
import { simpleParser } from 'mailparser';
import { OAuth2Server } from 'oauth2-mock-server';
import PocketBase, { ClientResponseError } from 'pocketbase';
import { SMTPServer } from 'smtp-server';
import { startServer, SUPERUSER_EMAIL, SUPERUSER_PASSWORD } from './server.mjs';

// The SDK's realtime service (used by its OAuth2 popup flow) needs a global EventSource.
globalThis.EventSource = EventSource;

const MAIL_DEADLINE_MS = 15_000;
const PASSWORD = 'first-password-1';

let server;
let pb;
let sink;
let idp;
const mails = [];

/** A local SMTP server that keeps every mail it receives, parsed. */
async function startSink() {
  const smtp = new SMTPServer({
    authOptional: true,
    // Plain SMTP: PocketBase (Go's net/smtp) and Syncbase (lettre) both upgrade to STARTTLS
    // whenever a server offers it, and this one has no certificate they would trust.
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, callback) {
      simpleParser(stream)
        .then((mail) => {
          mails.push({ to: session.envelope.rcptTo.map((r) => r.address), mail });
          callback();
        })
        .catch(callback);
    },
  });
  await new Promise((resolve, reject) => {
    smtp.once('error', reject);
    smtp.listen(0, '127.0.0.1', resolve);
  });
  return { smtp, port: smtp.server.address().port };
}

/** Waits for the first mail to `to` (matching `pred`) that arrived after `since` mails. */
async function mailTo(to, since, pred = () => true) {
  const deadline = Date.now() + MAIL_DEADLINE_MS;
  while (Date.now() < deadline) {
    const found = mails.slice(since).find((m) => m.to.includes(to) && pred(m.mail));
    if (found) return found.mail;
    await new Promise((r) => setTimeout(r, 25)); // poll interval, not synchronisation
  }
  assert.fail(`no mail to ${to} within ${MAIL_DEADLINE_MS} ms (got ${mails.length} mails)`);
}

/** The token of the confirm link `/_/#/auth/<action>/<token>` in a mail. */
function tokenIn(mail, action) {
  const m = new RegExp(`/auth/${action}/([A-Za-z0-9_.-]+)`).exec(mail.html || '');
  assert.ok(m, `a ${action} link in: ${mail.html}`);
  return m[1];
}

/** Awaits `promise`, expects a ClientResponseError with `status`, and returns it. */
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

/** A fresh SDK client with no auth. */
function client() {
  const c = new PocketBase(server.url);
  c.autoCancellation(false);
  return c;
}

/** Signs up a user on the public `users` collection. */
async function signUp(email, password = PASSWORD) {
  return client().collection('users').create({ email, password, passwordConfirm: password });
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

before(async () => {
  server = await startServer();
  sink = await startSink();
  pb = client();
  await pb.collection('_superusers').authWithPassword(SUPERUSER_EMAIL, SUPERUSER_PASSWORD);
  await pb.settings.update({
    meta: { appName: 'Acme', appURL: 'http://app.example.com', senderName: 'Acme Support', senderAddress: 'support@acme.test' },
    smtp: { enabled: true, host: '127.0.0.1', port: sink.port, tls: false },
  });
});

after(async () => {
  await server?.stop();
  await new Promise((resolve) => (sink ? sink.smtp.close(resolve) : resolve()));
  await idp?.stop();
});

describe('email verification', () => {
  test('sign-up, verification mail, confirm: the user is verified', async () => {
    const email = 'verify-me@example.com';
    const user = await signUp(email);
    assert.equal(user.verified, false);
    const since = mails.length;
    // An unknown address gets the same answer and no mail.
    assert.equal(await client().collection('users').requestVerification('nobody@example.com'), true);
    assert.equal(await client().collection('users').requestVerification(email), true);
    const mail = await mailTo(email, since);
    assert.equal(mail.subject, 'Verify your Acme email');
    assert.equal(mail.from.value[0].address, 'support@acme.test');
    assert.equal(mail.from.value[0].name, 'Acme Support');
    assert.ok(mail.text.includes('http://app.example.com/_/#/auth/confirm-verification/'), mail.text);
    const token = tokenIn(mail, 'confirm-verification');
    assert.equal(await client().collection('users').confirmVerification(token), true);
    const auth = await client().collection('users').authWithPassword(email, PASSWORD);
    assert.equal(auth.record.verified, true);
    assert.equal(mails.slice(since).filter((m) => m.to.includes('nobody@example.com')).length, 0);
  });

  test('bad input: an invalid address and a forged token are 400s naming the field', async () => {
    const bad = await rejects(client().collection('users').requestVerification('not-an-email'), 400);
    assert.equal(bad.response.data.email.code, 'validation_is_email');
    const forged = await rejects(
      client().collection('users').confirmVerification('eyJhbGciOiJIUzI1NiJ9.eyJlbWFpbCI6ImFAYi5jIn0.c2ln'),
      400,
    );
    assert.equal(forged.response.data.token.code, 'validation_invalid_token');
  });
});

describe('password reset', () => {
  test('reset mail, confirm, the new password works and the old one and the link do not', async () => {
    const email = 'forgetful@example.com';
    await signUp(email);
    const since = mails.length;
    assert.equal(await client().collection('users').requestPasswordReset(email), true);
    const mail = await mailTo(email, since);
    assert.equal(mail.subject, 'Reset your Acme password');
    const token = tokenIn(mail, 'confirm-password-reset');

    const mismatch = await rejects(
      client().collection('users').confirmPasswordReset(token, 'second-password-2', 'other-password'),
      400,
    );
    assert.equal(mismatch.response.data.passwordConfirm.code, 'validation_values_mismatch');

    assert.equal(
      await client().collection('users').confirmPasswordReset(token, 'second-password-2', 'second-password-2'),
      true,
    );
    await rejects(client().collection('users').authWithPassword(email, PASSWORD), 400);
    const auth = await client().collection('users').authWithPassword(email, 'second-password-2');
    // The mail reached the account's address: that verifies it too.
    assert.equal(auth.record.verified, true);
    const reused = await rejects(
      client().collection('users').confirmPasswordReset(token, 'third-password-3', 'third-password-3'),
      400,
    );
    assert.equal(reused.response.data.token.code, 'validation_invalid_token');
  });
});

describe('email change', () => {
  test('request as the user, confirm with the password: the new address signs in, old tokens die', async () => {
    const email = 'old-address@example.com';
    const newEmail = 'new-address@example.com';
    await signUp(email);
    const me = client();
    await me.collection('users').authWithPassword(email, PASSWORD);
    await rejects(client().collection('users').requestEmailChange(newEmail), 401);
    const since = mails.length;
    assert.equal(await me.collection('users').requestEmailChange(newEmail), true);
    const mail = await mailTo(newEmail, since);
    assert.equal(mail.subject, 'Confirm your Acme new email address');
    const token = tokenIn(mail, 'confirm-email-change');

    const wrong = await rejects(client().collection('users').confirmEmailChange(token, 'not-my-password'), 400);
    assert.equal(wrong.response.data.password.code, 'validation_invalid_password');

    assert.equal(await client().collection('users').confirmEmailChange(token, PASSWORD), true);
    const auth = await client().collection('users').authWithPassword(newEmail, PASSWORD);
    assert.equal(auth.record.email, newEmail);
    assert.equal(auth.record.verified, true);
    await rejects(client().collection('users').authWithPassword(email, PASSWORD), 400);
    // The change gave the record a new token key: the session from before is over.
    await rejects(me.collection('users').authRefresh(), 401);
  });
});

describe('one-time passwords and MFA', () => {
  const email = 'otp-user@example.com';

  /** Requests an OTP for `email` and reads it from the mail. */
  async function requestOtp(c = client()) {
    const since = mails.length;
    const { otpId } = await c.collection('users').requestOTP(email);
    const mail = await mailTo(email, since, (m) => m.subject === 'OTP for Acme');
    const code = /<strong>(\d+)<\/strong>/.exec(mail.html)?.[1];
    assert.ok(code, mail.html);
    return { otpId, code };
  }

  before(async () => {
    await signUp(email);
    await pb.collections.update('users', { otp: { enabled: true } });
  });

  after(async () => {
    await pb.collections.update('users', { otp: { enabled: false }, mfa: { enabled: false } });
  });

  test('OTP login: the mailed code signs in once', async () => {
    const methods = await client().collection('users').listAuthMethods();
    assert.equal(methods.otp.enabled, true);
    assert.equal(methods.otp.duration, 180);
    const { otpId, code } = await requestOtp();
    assert.equal(code.length, 8);
    const wrong = code === '00000000' ? '11111111' : '00000000';
    await rejects(client().collection('users').authWithOTP(otpId, wrong), 400);
    const auth = await client().collection('users').authWithOTP(otpId, code);
    assert.equal(auth.record.email, email);
    assert.ok(auth.token);
    // Used once, gone.
    await rejects(client().collection('users').authWithOTP(otpId, code), 400);
    // An unknown address gets an otpId that looks the same and signs nobody in.
    const { otpId: fake } = await client().collection('users').requestOTP('no-such-user@example.com');
    assert.match(fake, /^[a-z0-9]{15}$/);
    await rejects(client().collection('users').authWithOTP(fake, '12345678'), 400);
  });

  test('MFA: a password alone gets an mfaId, the OTP completes the sign-in', async () => {
    // The OTP sign-in above replaced the unverified account's password (PocketBase's guard
    // against pre-created accounts): give it a known one again.
    const user = await pb.collection('users').getFirstListItem(`email = "${email}"`);
    await pb.collection('users').update(user.id, { password: PASSWORD, passwordConfirm: PASSWORD });
    await pb.collections.update('users', { mfa: { enabled: true } });
    const c = client();
    const first = await rejects(c.collection('users').authWithPassword(email, PASSWORD), 401);
    const mfaId = first.response.mfaId;
    assert.match(mfaId, /^[a-z0-9]{15}$/);
    assert.equal(c.authStore.isValid, false);
    // The same method twice is not a second factor.
    const again = await rejects(c.collection('users').authWithPassword(email, PASSWORD, { mfaId }), 400);
    assert.equal(again.response.message, 'A different authentication method is required.');
    const { otpId, code } = await requestOtp(c);
    const auth = await c.collection('users').authWithOTP(otpId, code, { mfaId });
    assert.equal(auth.record.email, email);
    assert.equal(c.authStore.isValid, true);
    // The MFA session was used up.
    const { otpId: otp2, code: code2 } = await requestOtp(c);
    await rejects(c.collection('users').authWithOTP(otp2, code2, { mfaId }), 400);
  });
});

describe('OAuth2', () => {
  const redirectURL = 'http://app.example.com/oauth2-redirect';
  let issuer;
  // Who the provider says is signing in.
  let idpUser = {
    sub: 'idp-user-1',
    email: 'oauth-user@example.com',
    email_verified: true,
    name: 'Olga Auth',
    preferred_username: 'olga',
  };

  before(async () => {
    idp = new OAuth2Server();
    await idp.issuer.keys.generate('RS256');
    await idp.start(await freePort(), '127.0.0.1');
    issuer = idp.issuer.url;
    idp.service.on('beforeUserinfo', (res) => {
      res.body = idpUser;
    });
    await pb.collections.update('users', {
      oauth2: {
        enabled: true,
        providers: [{
          name: 'oidc',
          clientId: 'syncbase-test',
          clientSecret: 'client-secret',
          authURL: `${issuer}/authorize`,
          tokenURL: `${issuer}/token`,
          userInfoURL: `${issuer}/userinfo`,
        }],
      },
    });
  });

  /** Runs the provider's side of the code flow: the browser visit to the authorization URL. */
  async function authorize(provider) {
    const res = await fetch(provider.authURL + encodeURIComponent(redirectURL), { redirect: 'manual' });
    assert.equal(res.status, 302);
    const back = new URL(res.headers.get('location'));
    assert.equal(`${back.origin}${back.pathname}`, redirectURL);
    assert.equal(back.searchParams.get('state'), provider.state);
    return back.searchParams.get('code');
  }

  test('auth-methods lists the provider with PKCE; the code flow signs up, then signs in', async () => {
    const methods = await client().collection('users').listAuthMethods();
    assert.equal(methods.oauth2.enabled, true);
    const provider = methods.oauth2.providers.find((p) => p.name === 'oidc');
    assert.ok(provider, JSON.stringify(methods.oauth2));
    assert.equal(provider.codeChallengeMethod, 'S256');
    assert.ok(provider.authURL.startsWith(`${issuer}/authorize?`), provider.authURL);
    assert.ok(provider.authURL.endsWith('&redirect_uri='), provider.authURL);
    // The client secret is never served.
    const collection = await pb.collections.getOne('users');
    assert.equal(collection.oauth2.providers[0].clientSecret, undefined);

    const c = client();
    const first = await c.collection('users').authWithOAuth2Code(
      'oidc', await authorize(provider), provider.codeVerifier, redirectURL, { name: 'From createData' },
    );
    assert.equal(first.meta.isNew, true);
    assert.equal(first.meta.id, 'idp-user-1');
    assert.equal(first.meta.email, 'oauth-user@example.com');
    assert.equal(first.record.email, 'oauth-user@example.com');
    assert.equal(first.record.name, 'From createData');
    assert.equal(first.record.verified, true);
    assert.equal(c.authStore.isValid, true);

    const links = await c.collection('users').listExternalAuths(first.record.id);
    assert.deepEqual(links.map((l) => [l.provider, l.providerId]), [['oidc', 'idp-user-1']]);

    const again = (await client().collection('users').listAuthMethods()).oauth2.providers[0];
    const second = await client().collection('users').authWithOAuth2Code(
      'oidc', await authorize(again), again.codeVerifier, redirectURL,
    );
    assert.equal(second.meta.isNew, false);
    assert.equal(second.record.id, first.record.id);
  });

  test('the SDK\'s authWithOAuth2 flow: realtime @oauth2 and /api/oauth2-redirect', async () => {
    const c = client();
    const auth = await c.collection('users').authWithOAuth2({
      provider: 'oidc',
      // The browser's part: visit the provider, follow its redirect back to the server.
      urlCallback: async (url) => {
        const res = await fetch(url, { redirect: 'manual' });
        assert.equal(res.status, 302);
        const back = new URL(res.headers.get('location'));
        assert.equal(back.pathname, '/api/oauth2-redirect');
        const done = await fetch(back, { redirect: 'manual' });
        assert.ok(done.status < 400, `redirect answered ${done.status}`);
      },
    });
    assert.equal(auth.record.email, 'oauth-user@example.com');
    assert.equal(auth.meta.isNew, false);
    assert.equal(c.authStore.isValid, true);
    // A redirect nobody waits for signs nobody in.
    const stray = await fetch(`${server.url}/api/oauth2-redirect?state=nobody&code=x`, { redirect: 'manual' });
    assert.ok(stray.status < 400);
  });

  test('without createData the provider\'s name fills the mapped field', async () => {
    idpUser = { sub: 'idp-user-2', email: 'second@example.com', email_verified: true, name: 'Second Person' };
    try {
      const provider = (await client().collection('users').listAuthMethods()).oauth2.providers[0];
      const auth = await client().collection('users').authWithOAuth2Code(
        'oidc', await authorize(provider), provider.codeVerifier, redirectURL,
      );
      assert.equal(auth.meta.isNew, true);
      assert.equal(auth.record.name, 'Second Person');
      assert.equal(auth.record.email, 'second@example.com');
    } finally {
      idpUser = { sub: 'idp-user-1', email: 'oauth-user@example.com', email_verified: true, name: 'Olga Auth' };
    }
  });

  test('an OIDC provider without a userinfo endpoint: its signed id_token is the user', async () => {
    idp.service.on('beforeTokenSigning', (token) => {
      Object.assign(token.payload, { email: 'idtoken@example.com', email_verified: true, name: 'Ida Token' });
    });
    const oidc = {
      name: 'oidc',
      clientId: 'syncbase-test',
      clientSecret: 'client-secret',
      authURL: `${issuer}/authorize`,
      tokenURL: `${issuer}/token`,
      userInfoURL: `${issuer}/userinfo`,
    };
    const oidc2 = (issuers) => ({
      ...oidc,
      name: 'oidc2',
      userInfoURL: '',
      extra: { jwksURL: `${issuer}/jwks`, issuers },
    });
    await pb.collections.update('users', { oauth2: { providers: [oidc, oidc2([issuer])] } });
    const provider = (await client().collection('users').listAuthMethods()).oauth2.providers.find((p) => p.name === 'oidc2');
    const auth = await client().collection('users').authWithOAuth2Code(
      'oidc2', await authorize(provider), provider.codeVerifier, redirectURL,
    );
    assert.equal(auth.meta.id, 'johndoe');
    assert.equal(auth.meta.isNew, true);
    assert.equal(auth.record.email, 'idtoken@example.com');
    assert.equal(auth.record.name, 'Ida Token');

    // An id_token from an issuer the settings do not trust is refused.
    await pb.collections.update('users', { oauth2: { providers: [oidc, oidc2(['https://elsewhere.example'])] } });
    const other = (await client().collection('users').listAuthMethods()).oauth2.providers.find((p) => p.name === 'oidc2');
    const refused = await rejects(
      client().collection('users').authWithOAuth2Code('oidc2', await authorize(other), other.codeVerifier, redirectURL),
      400,
    );
    assert.equal(refused.response.message, 'Failed to fetch OAuth2 user.');
  });

  test('deleting the user deletes its provider links', async () => {
    const user = await pb.collection('users').getFirstListItem('email = "oauth-user@example.com"');
    assert.equal((await pb.collection('_externalAuths').getFullList({ filter: `recordRef = "${user.id}"` })).length, 1);
    await pb.collection('users').delete(user.id);
    assert.equal((await pb.collection('_externalAuths').getFullList({ filter: `recordRef = "${user.id}"` })).length, 0);
  });

  test('bad input: an unknown provider is a 400 naming it, a bad code a 400', async () => {
    const unknown = await rejects(
      client().collection('users').authWithOAuth2Code('github', 'code', 'verifier', redirectURL),
      400,
    );
    assert.equal(unknown.response.data.provider.code, 'validation_invalid_provider');
    const provider = (await client().collection('users').listAuthMethods()).oauth2.providers[0];
    const badCode = await rejects(
      client().collection('users').authWithOAuth2Code('oidc', 'not-a-code', provider.codeVerifier, redirectURL),
      400,
    );
    assert.equal(badCode.response.message, 'Failed to fetch OAuth2 token.');
  });
});

describe('auth options', () => {
  test('bad options are refused with PocketBase\'s codes and change nothing', async () => {
    const before = await pb.collections.getOne('users');
    const mfa = await rejects(pb.collections.update('users', { mfa: { enabled: true }, otp: { enabled: false }, oauth2: { enabled: false } }), 400);
    assert.equal(mfa.response.data.mfa.enabled.code, 'validation_mfa_not_enough_auths');
    const provider = await rejects(
      pb.collections.update('users', { oauth2: { enabled: true, providers: [{ name: 'no-such-provider', clientId: '', clientSecret: 'x' }] } }),
      400,
    );
    assert.equal(provider.response.data.oauth2.providers['0'].name.code, 'validation_missing_provider');
    assert.equal(provider.response.data.oauth2.providers['0'].clientId.code, 'validation_required');
    const otp = await rejects(pb.collections.update('users', { otp: { enabled: true, duration: 5, length: 2 } }), 400);
    assert.equal(otp.response.data.otp.duration.code, 'validation_min_greater_equal_than_required');
    assert.equal(otp.response.data.otp.length.code, 'validation_min_greater_equal_than_required');
    const template = await rejects(pb.collections.update('users', { verificationTemplate: { subject: '', body: 'x' } }), 400);
    assert.equal(template.response.data.verificationTemplate.subject.code, 'validation_required');
    const after = await pb.collections.getOne('users');
    assert.deepEqual(
      [after.mfa, after.otp, after.oauth2, after.verificationTemplate],
      [before.mfa, before.otp, before.oauth2, before.verificationTemplate],
    );
  });
});

describe('settings test email', () => {
  test('sends the chosen template now; a bad template is a 400', async () => {
    const since = mails.length;
    assert.equal(await pb.settings.testEmail('users', 'admin-check@example.com', 'password-reset'), true);
    const mail = await mailTo('admin-check@example.com', since);
    assert.equal(mail.subject, 'Reset your Acme password');
    const bad = await rejects(pb.settings.testEmail('users', 'admin-check@example.com', 'nope'), 400);
    assert.equal(bad.response.data.template.code, 'validation_in_invalid');
    await rejects(client().settings.testEmail('users', 'x@example.com', 'otp'), 401);
  });
});
