// The Settings pages: application (name, URL, batch API), mail (sender, SMTP, test email),
// export and import of the collections JSON, and the raw settings document.

import { api } from './api.js';
import { h, mount, toast, busy, codeBlock } from './dom.js';
import { exportPage, importPage } from './transfer.js';

const SECTIONS = [
  ['', 'Application', 'System'],
  ['mail', 'Mail settings', 'System'],
  ['raw', 'All settings (JSON)', 'System'],
  ['export-collections', 'Export collections', 'Sync'],
  ['import-collections', 'Import collections', 'Sync'],
];

function get(obj, path) {
  return path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj);
}
function set(obj, path, v) {
  const keys = path.split('.');
  let o = obj;
  for (const k of keys.slice(0, -1)) o = o[k] ??= {};
  o[keys[keys.length - 1]] = v;
}

/** A form over `paths` of the settings document; saves the changed sections with PATCH. */
function settingsForm(settings, rows, { onSaved } = {}) {
  const patch = {};
  const errors = h('div', { class: 'alert danger hidden', attrs: { 'data-testid': 'settings-error' } });
  const controls = rows.map((row) => {
    if (row instanceof Node) return row;
    const [path, kind, label, hint] = row;
    const v = get(settings, path);
    let input;
    if (kind === 'bool') {
      input = h('input', { type: 'checkbox', checked: !!v });
      input.addEventListener('change', () => set(patch, path, input.checked));
      return h('label', { class: 'check', dataset: { setting: path } }, input, label);
    }
    if (kind === 'select') {
      input = h('select', {}, hint.map((o) => h('option', { value: o, text: o || '(auto)', selected: o === (v ?? '') })));
      input.addEventListener('change', () => set(patch, path, input.value));
      return h('div', { class: 'field', dataset: { setting: path } }, h('label', { text: label }), input);
    }
    input = h('input', { type: kind === 'int' ? 'number' : kind === 'password' ? 'password' : 'text', value: kind === 'password' ? '' : v ?? '', placeholder: kind === 'password' ? '(unchanged)' : '' });
    input.addEventListener('input', () => set(patch, path, kind === 'int' ? Number(input.value) : input.value));
    return h('div', { class: 'field', dataset: { setting: path } }, h('label', { text: label }), input, hint && kind !== 'select' ? h('div', { class: 'hint', text: hint }) : null);
  });
  const save = h('button', { class: 'primary', text: 'Save changes', attrs: { 'data-testid': 'settings-save' } });
  save.addEventListener('click', () => busy(save, async () => {
    errors.classList.add('hidden');
    for (const el of document.querySelectorAll('.field-error')) el.remove();
    try {
      const out = await api('PATCH', '/api/settings', { body: patch });
      for (const k of Object.keys(patch)) delete patch[k];
      toast('Settings saved.', 'success');
      onSaved?.(out);
    } catch (e) {
      mount(errors, e.message);
      errors.classList.remove('hidden');
      const walk = (data, prefix) => {
        for (const [k, v] of Object.entries(data || {})) {
          const path = prefix ? `${prefix}.${k}` : k;
          if (v && typeof v === 'object' && 'message' in v && typeof v.message === 'string') {
            document.querySelector(`[data-setting="${CSS.escape(path)}"]`)?.after(h('div', { class: 'field-error', text: v.message, attrs: { 'data-error-for': path } }));
          } else if (v && typeof v === 'object') walk(v, path);
        }
      };
      walk(e.data, '');
    }
  }));
  return h('div', { class: 'stack' }, h('div', { class: 'grid two' }, controls), errors, h('div', { class: 'row end' }, save));
}

function applicationSection(settings) {
  return h('div', { class: 'stack' },
    settingsForm(settings, [
      ['meta.appName', 'text', 'Application name'],
      ['meta.appURL', 'text', 'Application URL', 'Used in mail links ({APP_URL}).'],
    ]),
    h('h3', { text: 'Batch Web API' }),
    h('p', { class: 'muted small', text: 'POST /api/batch runs several record writes in one transaction (off by default, as in PocketBase).' }),
    settingsForm(settings, [
      ['batch.enabled', 'bool', 'Enable'],
      h('span'),
      ['batch.maxRequests', 'int', 'Max requests in a batch'],
      ['batch.timeout', 'int', 'Timeout (seconds)'],
      ['batch.maxBodySize', 'int', 'Max body size (bytes, 0 = default)'],
    ]));
}

function mailSection(settings) {
  const to = h('input', { type: 'email', placeholder: 'you@example.com', attrs: { 'data-testid': 'test-email-to' } });
  const template = h('select', {}, ['verification', 'password-reset', 'email-change', 'otp', 'login-alert'].map((t) => h('option', { value: t, text: t })));
  const send = h('button', { text: 'Send test email' });
  send.addEventListener('click', () => busy(send, async () => {
    try {
      await api('POST', '/api/settings/test/email', { body: { email: to.value, template: template.value } });
      toast('Test email sent.', 'success');
    } catch (e) {
      toast(e.message, 'error');
    }
  }));
  return h('div', { class: 'stack' },
    settingsForm(settings, [
      ['meta.senderName', 'text', 'Sender name'],
      ['meta.senderAddress', 'text', 'Sender address'],
    ]),
    h('h3', { text: 'SMTP' }),
    h('p', { class: 'muted small', text: 'With SMTP off, mail goes through the system\'s sendmail. Mail settings are per node.' }),
    settingsForm(settings, [
      ['smtp.enabled', 'bool', 'Use an SMTP server'],
      ['smtp.tls', 'bool', 'Implicit TLS (else STARTTLS when offered)'],
      ['smtp.host', 'text', 'Host'],
      ['smtp.port', 'int', 'Port'],
      ['smtp.username', 'text', 'Username'],
      ['smtp.password', 'password', 'Password'],
      ['smtp.authMethod', 'select', 'Auth method', ['', 'PLAIN', 'LOGIN']],
      ['smtp.localName', 'text', 'Local name (EHLO)'],
    ]),
    h('h3', { text: 'Test' }),
    h('div', { class: 'row wrap' }, h('div', { class: 'field grow' }, h('label', { text: 'To' }), to), h('div', { class: 'field' }, h('label', { text: 'Template' }), template), send));
}

function rawSection(settings) {
  return h('div', { class: 'stack' },
    h('p', { class: 'muted', text: 'The whole settings document of this node, as GET /api/settings serves it (secrets left out). Sections without a form here are kept for clients that read them.' }),
    codeBlock(JSON.stringify(settings, null, 2), 'settings-json'));
}

export async function settingsPage(root, info) {
  const section = info.params.section || '';
  let groupSeen = '';
  const nav = h('aside', { class: 'sidebar' }, SECTIONS.map(([key, label, group]) => {
    const head = group !== groupSeen ? h('div', { class: 'section', text: group }) : null;
    groupSeen = group;
    return [head, h('a', { class: ['item', key === section && 'active'], href: key ? `#/settings/${key}` : '#/settings', dataset: { settings: key || 'application' } }, label)];
  }));
  const main = h('main', { class: 'page' });
  mount(root, h('div', { class: 'body' }, nav, main));
  const title = SECTIONS.find(([k]) => k === section)?.[1] ?? 'Settings';
  const header = h('div', { class: 'page-header' }, h('div', { class: 'breadcrumbs' }, h('span', { class: 'crumb', text: 'Settings' }), h('span', { class: 'sep', text: '/' }), h('strong', { text: title })));
  const content = h('div', { class: 'stack' });
  mount(main, header, content);
  if (section === 'export-collections') return exportPage(content);
  if (section === 'import-collections') return importPage(content);
  let settings;
  try {
    settings = await api('GET', '/api/settings');
  } catch (e) {
    mount(content, h('div', { class: 'alert danger', text: e.message }));
    return;
  }
  if (section === 'mail') mount(content, mailSection(settings));
  else if (section === 'raw') mount(content, rawSection(settings));
  else mount(content, applicationSection(settings));
}
