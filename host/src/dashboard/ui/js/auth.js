// Guest pages: the superuser login, and the first-run form reached through the install link
// the node prints while it has no superuser (`#/pbinstall/{token}`, as PocketBase).

import { api, auth, login, decodePayload } from './api.js';
import { h, mount, busy } from './dom.js';
import { navigate } from './router.js';

function logo() {
  return h('img', { class: 'logo', src: 'favicon.svg', alt: '' });
}

function input(name, label, type = 'text', extra = {}) {
  const el = h('input', { id: name, name, type, required: true, ...extra });
  return { el, box: h('div', { class: 'field', dataset: { field: name } }, h('label', { class: 'req', attrs: { for: name }, text: label }), el) };
}

function showFieldErrors(form, err, banner) {
  for (const el of form.querySelectorAll('.field-error')) el.remove();
  for (const el of form.querySelectorAll('.field.invalid')) el.classList.remove('invalid');
  let placed = false;
  for (const [name, e] of Object.entries(err.data || {})) {
    const box = form.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
    if (!box) continue;
    placed = true;
    box.classList.add('invalid');
    box.after(h('div', { class: 'field-error', text: e.message, attrs: { 'data-error-for': name } }));
  }
  mount(banner, err.message);
  banner.classList.toggle('hidden', placed && err.status === 400 && !err.message);
}

export function loginPage(root) {
  const email = input('email', 'Email', 'email', { autocomplete: 'username' });
  const password = input('password', 'Password', 'password', { autocomplete: 'current-password' });
  const banner = h('div', { class: 'alert danger hidden', attrs: { 'data-testid': 'login-error' } });
  const submit = h('button', { class: 'primary', type: 'submit', text: 'Login' });
  const form = h('form', {}, email.box, password.box, banner, submit);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(submit, async () => {
      try {
        await login(email.el.value, password.el.value);
        navigate('#/collections');
      } catch (err) {
        showFieldErrors(form, err.status === 400 && !Object.keys(err.data).length ? { ...err, message: 'Invalid login credentials.' } : err, banner);
      }
    });
  });
  mount(root, h('div', { class: 'guest' }, logo(), h('h1', { text: 'Superuser login' }), form));
  email.el.focus();
}

export function installPage(root, { params }) {
  const token = params.token || '';
  const claims = decodePayload(token);
  if (claims.type !== 'auth' || !claims.exp || claims.exp * 1000 < Date.now()) {
    mount(root, h('div', { class: 'guest' }, logo(), h('h1', { text: 'Install link expired' }),
      h('p', { class: 'lead' }, 'This install link is not valid or has expired. Restart the node to print a new one, or run ',
        h('code', { text: 'syncbase superuser upsert EMAIL PASSWORD' }), '.'),
      h('p', { class: 'lead' }, h('a', { href: '#/login', text: 'Go to the login' }))));
    return;
  }
  const email = input('email', 'Email', 'email', { autocomplete: 'username' });
  const password = input('password', 'Password', 'password', { autocomplete: 'new-password', minLength: 8 });
  const confirm = input('passwordConfirm', 'Password confirm', 'password', { autocomplete: 'new-password' });
  password.box.appendChild(h('div', { class: 'hint', text: 'At least 8 characters; 10 or more recommended.' }));
  const banner = h('div', { class: 'alert danger hidden', attrs: { 'data-testid': 'install-error' } });
  const submit = h('button', { class: 'primary', type: 'submit', text: 'Create superuser and login' });
  const form = h('form', { attrs: { novalidate: true } }, email.box, password.box, confirm.box, banner, submit);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(submit, async () => {
      try {
        await api('POST', '/api/collections/_superusers/records', {
          body: { email: email.el.value, password: password.el.value, passwordConfirm: confirm.el.value },
          token,
        });
        auth.clear();
        await login(email.el.value, password.el.value);
        navigate('#/collections');
      } catch (err) {
        if (err.status === 401 || err.status === 403) {
          err.message = 'The install link is no longer valid (a superuser may already exist). Log in instead.';
        }
        showFieldErrors(form, err, banner);
      }
    });
  });
  mount(root, h('div', { class: 'guest' }, logo(), h('h1', { text: 'Set up your Syncbase node' }),
    h('p', { class: 'lead', text: 'Create the first superuser account of this node to continue:' }), form));
  email.el.focus();
}

// --- the pages mail links lead to (`{APP_URL}/_/#/auth/...`, PocketBase's default templates) ---

function authCollectionOf(token) {
  return decodePayload(token).collectionId || '';
}

function blankPage(root, title, ...children) {
  mount(root, h('div', { class: 'guest' }, logo(), h('h1', { text: title }), ...children));
}

/** `#/auth/confirm-verification/{token}`: confirms at once. */
export async function confirmVerificationPage(root, { params }) {
  const status = h('p', { class: 'lead', text: 'Verifying…' });
  blankPage(root, 'Email verification', status);
  try {
    await api('POST', `/api/collections/${encodeURIComponent(authCollectionOf(params.token))}/confirm-verification`, { body: { token: params.token }, token: '' });
    mount(status, 'Your email address is verified. You can close this page.');
  } catch (e) {
    status.className = 'lead txt-danger';
    mount(status, `This link is invalid or has expired. ${e.message}`);
  }
}

/** `#/auth/confirm-password-reset/{token}` and `#/auth/confirm-email-change/{token}`. */
function confirmWithForm(root, params, { title, action, fields, done }) {
  const inputs = fields.map(([name, label]) => input(name, label, 'password', { autocomplete: 'new-password' }));
  const banner = h('div', { class: 'alert danger hidden' });
  const submit = h('button', { class: 'primary', type: 'submit', text: 'Confirm' });
  const form = h('form', { attrs: { novalidate: true } }, inputs.map((i) => i.box), banner, submit);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(submit, async () => {
      const body = { token: params.token };
      fields.forEach(([name], i) => { body[name] = inputs[i].el.value; });
      try {
        await api('POST', `/api/collections/${encodeURIComponent(authCollectionOf(params.token))}/${action}`, { body, token: '' });
        blankPage(root, title, h('p', { class: 'lead', text: done }));
      } catch (err) {
        showFieldErrors(form, err, banner);
      }
    });
  });
  blankPage(root, title, form);
}

export function confirmPasswordResetPage(root, { params }) {
  confirmWithForm(root, params, {
    title: 'Reset your password',
    action: 'confirm-password-reset',
    fields: [['password', 'New password'], ['passwordConfirm', 'New password confirm']],
    done: 'Your password was changed. You can sign in with it now.',
  });
}

export function confirmEmailChangePage(root, { params }) {
  confirmWithForm(root, params, {
    title: 'Confirm your new email address',
    action: 'confirm-email-change',
    fields: [['password', 'Your password']],
    done: 'Your email address was changed.',
  });
}
