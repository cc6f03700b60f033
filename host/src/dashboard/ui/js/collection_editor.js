// The collection panel: name and type, the fields editor (every type with its options),
// indexes, API rules checked by the server while typed, and an auth collection's options.

import { api } from './api.js';
import { h, mount, overlay, toast, confirmDialog, busy, dropdown, copyText, svg, debounce } from './dom.js';
import { icons } from './icons.js';
import { TYPES, creatableTypes, glyph, newField } from './fields.js';

const RULES = [
  ['listRule', 'List/Search rule'],
  ['viewRule', 'View rule'],
  ['createRule', 'Create rule'],
  ['updateRule', 'Update rule'],
  ['deleteRule', 'Delete rule'],
];
const AUTH_RULES = [
  ['authRule', 'Authentication rule', 'Checked on every sign-in, after the credentials; e.g. verified = true.'],
  ['manageRule', 'Manage rule', 'Who may manage other users of this collection (email, password) without their old password.'],
];

const clone = (v) => JSON.parse(JSON.stringify(v));

function blankCollection(type) {
  const c = { name: '', type, fields: [], indexes: [], listRule: null, viewRule: null, createRule: null, updateRule: null, deleteRule: null };
  c.fields.push({ ...newField('autodate', 'created'), onCreate: true, onUpdate: false });
  c.fields.push({ ...newField('autodate', 'updated'), onCreate: true, onUpdate: true });
  return c;
}

/** Gets/sets a dotted path (`otp.duration`) in an object. */
function getPath(obj, path) {
  return path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj);
}
function setPath(obj, path, value) {
  const keys = path.split('.');
  let o = obj;
  for (const k of keys.slice(0, -1)) { if (o[k] == null || typeof o[k] !== 'object') o[k] = {}; o = o[k]; }
  o[keys[keys.length - 1]] = value;
}

/** An input bound to `obj[path]`; kinds: text, int, num, bool, list, json, textarea. */
function bound(obj, path, kind, label, hint, extra = {}) {
  const v = getPath(obj, path);
  let input;
  if (kind === 'bool') {
    input = h('input', { type: 'checkbox', checked: !!v });
    input.addEventListener('change', () => { setPath(obj, path, input.checked); extra.onchange?.(); });
    return h('label', { class: 'check', dataset: { opt: path } }, input, label);
  }
  if (kind === 'textarea' || kind === 'json') {
    input = h('textarea', { rows: kind === 'json' ? 6 : 4, value: kind === 'json' ? JSON.stringify(v ?? null, null, 2) : v ?? '' });
  } else if (kind === 'collection') {
    input = h('select', {}, h('option', { value: '', text: '- Select collection -' }),
      extra.collections.map((c) => h('option', { value: c.id, text: c.name, selected: c.id === v })));
  } else {
    input = h('input', { type: kind === 'int' || kind === 'num' ? 'number' : 'text', step: kind === 'num' ? 'any' : '1', value: kind === 'list' ? (v || []).join(', ') : v ?? '' });
  }
  const write = () => {
    const raw = input.value;
    let out;
    if (kind === 'int') out = raw === '' ? 0 : parseInt(raw, 10);
    else if (kind === 'num') out = raw === '' ? null : Number(raw);
    else if (kind === 'list') out = raw.split(',').map((s) => s.trim()).filter(Boolean);
    else if (kind === 'json') { try { out = JSON.parse(raw || 'null'); input.setCustomValidity(''); } catch (e) { input.setCustomValidity(e.message); return; } }
    else out = raw;
    setPath(obj, path, out);
    extra.onchange?.();
  };
  input.addEventListener(kind === 'collection' ? 'change' : 'input', write);
  return h('div', { class: 'field', dataset: { opt: path } }, h('label', { text: label }), input, hint ? h('div', { class: 'hint', text: hint }) : null);
}

/**
 * Opens the panel for `collection` (null: a new one, blank or from `draft`: a duplicate). `ctx.collections` is every collection;
 * `onSaved(c)` / `onDeleted()` refresh the page.
 */
export function openCollection(collection, ctx, { onSaved, onDeleted, draft: start } = {}) {
  const isNew = !collection;
  const draft = isNew ? (start ? clone(start) : blankCollection('base')) : clone(collection);
  const original = JSON.stringify(draft);
  const openRows = new Set();
  const deleted = new Set();
  let tab = 'fields';
  let typesOpen = false;
  let errors = {};

  const panel = overlay({
    testid: 'collection-panel',
    wide: true,
    beforeClose: () => JSON.stringify(draft) === original || window.confirm('Discard the unsaved changes?'),
  });
  panel.setTitle(isNew ? 'New collection' : h('span', {}, 'Edit ', h('strong', { text: collection.name }), ' collection'));

  const nameInput = h('input', { value: draft.name, placeholder: 'e.g. posts', attrs: { 'data-testid': 'collection-name' }, disabled: !!draft.system });
  nameInput.addEventListener('input', () => { draft.name = nameInput.value; scheduleCheck(); });
  const typeSel = h('select', { disabled: !isNew, attrs: { 'aria-label': 'Type', 'data-testid': 'collection-type' } },
    ['base', 'auth'].map((t) => h('option', { value: t, text: `Type: ${t[0].toUpperCase()}${t.slice(1)}`, selected: draft.type === t })));
  typeSel.addEventListener('change', () => {
    draft.type = typeSel.value;
    renderTabs();
    renderBody();
  });
  const nameBox = h('div', { class: 'field', dataset: { field: 'name' } }, h('label', { class: 'req', text: 'Name' }), h('div', { class: 'inline-row' }, nameInput, typeSel));
  const generalError = h('div', { class: 'alert danger hidden', attrs: { 'data-testid': 'collection-error' } });
  const tabsEl = h('div', { class: 'tabs' });
  const content = h('div');
  mount(panel.body, generalError, nameBox, tabsEl, content);

  function renderTabs() {
    const tabs = [['fields', 'Fields'], ['rules', 'API rules']];
    if (draft.type === 'auth') tabs.push(['options', 'Options']);
    if (!tabs.some(([k]) => k === tab)) tab = 'fields';
    const errCount = (k) => {
      if (k === 'fields') return errors.fields || errors.indexes ? '!' : '';
      if (k === 'rules') return [...RULES, ...AUTH_RULES].some(([r]) => errors[r]) ? '!' : '';
      return '';
    };
    mount(tabsEl, tabs.map(([k, label]) => h('button', {
      class: tab === k ? 'active' : '', attrs: { type: 'button', 'data-tab': k },
      onclick: () => { tab = k; renderTabs(); renderBody(); },
    }, label, errCount(k) ? h('span', { class: 'badge danger', text: '!' }) : null)));
  }

  function renderBody() {
    if (tab === 'fields') mount(content, fieldsTab());
    else if (tab === 'rules') mount(content, rulesTab());
    else mount(content, optionsTab());
  }

  // --- fields ---------------------------------------------------------------------------

  function fieldError(i) {
    const e = errors.fields?.[i];
    if (!e) return null;
    const msgs = e.message ? [e.message] : Object.entries(e).map(([k, v]) => `${k}: ${v?.message ?? JSON.stringify(v)}`);
    return h('div', { class: 'field-error', text: msgs.join(' · '), attrs: { 'data-error-for': `fields.${i}` } });
  }

  function fieldRow(f, i) {
    const isDeleted = deleted.has(f);
    const open = openRows.has(f);
    const name = h('input', { class: 'name', value: f.name, disabled: !!f.system || isDeleted, placeholder: 'Field name', attrs: { 'aria-label': 'Field name', 'data-testid': `field-name-${i}` } });
    name.addEventListener('input', () => { f.name = name.value; });
    const badges = [];
    if (f.required) badges.push(h('span', { class: 'badge success', text: 'Nonempty' }));
    if (f.hidden) badges.push(h('span', { class: 'badge warn', text: 'Hidden' }));
    if (f.type === 'select') badges.push(h('span', { class: 'muted small quick ellipsis', text: (f.values || []).join(' • ') || 'no choices' }));
    if (f.type === 'relation') badges.push(h('span', { class: 'muted small quick ellipsis', text: ctx.collections.find((c) => c.id === f.collectionId)?.name || 'no collection' }));
    const toggle = h('button', { class: 'plain small icon-only', attrs: { type: 'button', 'aria-label': `Options of ${f.name || 'field'}`, 'data-testid': `field-options-${i}` }, onclick: () => { if (open) openRows.delete(f); else openRows.add(f); renderBody(); } }, svg(icons.cog));
    const del = f.system ? null : isDeleted
      ? h('button', { class: 'small', text: 'Restore', attrs: { type: 'button' }, onclick: () => { deleted.delete(f); renderBody(); } })
      : h('button', { class: 'plain small icon-only', attrs: { type: 'button', 'aria-label': `Delete ${f.name || 'field'}` }, onclick: () => { if (f.id) deleted.add(f); else draft.fields.splice(draft.fields.indexOf(f), 1); renderBody(); } }, svg(icons.trash));
    const row = h('div', { class: ['field-row', isDeleted && 'deleted', f.system && 'system', errors.fields?.[i] && 'invalid'], dataset: { fieldIndex: i, fieldType: f.type } },
      h('div', { class: 'head' }, glyph(f.type), name, badges, toggle, del));
    if (open && !isDeleted) row.appendChild(fieldOptions(f));
    const err = fieldError(i);
    if (err) row.appendChild(h('div', { class: 'opts' }, err));
    return row;
  }

  function fieldOptions(f) {
    const t = TYPES[f.type];
    const rerender = () => renderBody();
    const common = h('div', { class: 'row wrap' },
      bound(f, 'required', 'bool', 'Nonempty', null, { onchange: rerender }),
      bound(f, 'hidden', 'bool', 'Hidden (never in API answers)', null, { onchange: rerender }),
      bound(f, 'presentable', 'bool', 'Presentable (shown in relation pickers)'));
    const specific = (t?.options || []).map(([key, kind, label, hint]) =>
      bound(f, key, kind, label, hint, { collections: ctx.collections.filter((c) => !c.system || c.name === 'users') }));
    return h('div', { class: 'opts stack' },
      specific.length ? h('div', { class: 'grid' }, specific) : null,
      bound(f, 'help', 'text', 'Help text'),
      common);
  }

  function newFieldButton() {
    const grid = h('div', { class: ['type-grid', !typesOpen && 'hidden'], attrs: { 'data-testid': 'field-types' } },
      creatableTypes().map((type) => h('button', {
        attrs: { type: 'button', 'data-type': type },
        onclick: () => {
          typesOpen = false;
          let n = 'field';
          let i = 1;
          while (draft.fields.some((f) => f.name === (i > 1 ? `${n}${i}` : n))) i++;
          const f = newField(type, i > 1 ? `${n}${i}` : n);
          // Before the trailing autodate fields, as PocketBase places new fields.
          let at = draft.fields.length;
          while (at > 0 && draft.fields[at - 1].type === 'autodate') at--;
          draft.fields.splice(at, 0, f);
          openRows.add(f);
          renderBody();
          const input = content.querySelector(`[data-field-index="${at}"] input.name`);
          input?.focus();
          input?.select();
        },
      }, glyph(type), TYPES[type].label)));
    const btn = h('button', { class: 'grow', attrs: { type: 'button', 'data-testid': 'new-field' }, onclick: () => { typesOpen = !typesOpen; grid.classList.toggle('hidden', !typesOpen); } }, svg(icons.plus), 'New field');
    return h('div', {}, h('div', { class: 'row' }, btn), grid);
  }

  function indexesSection() {
    const list = h('div', { class: 'index-list' },
      draft.indexes.map((sql, i) => h('div', { class: ['index-item', errors.indexes?.[i] && 'invalid'], dataset: { index: i } },
        h('code', { class: 'grow ellipsis', text: sql, attrs: { title: errors.indexes?.[i]?.message || sql } }),
        h('button', { class: 'small plain', text: 'Edit', attrs: { type: 'button' }, onclick: () => editIndex(i) }),
        h('button', { class: 'small plain icon-only', attrs: { type: 'button', 'aria-label': 'Remove index' }, onclick: () => { draft.indexes.splice(i, 1); renderBody(); } }, svg(icons.trash)))));
    return h('div', { class: 'stack' },
      h('h3', { text: `Unique constraints and indexes (${draft.indexes.length})` }),
      list,
      h('button', { class: 'small', attrs: { type: 'button', 'data-testid': 'new-index' }, onclick: () => editIndex(-1) }, svg(icons.plus), 'New index'));
  }

  function editIndex(i) {
    const m = overlay({ title: i < 0 ? 'New index' : 'Edit index', kind: 'modal', testid: 'index-modal' });
    const unique = h('input', { type: 'checkbox' });
    const cols = draft.fields.filter((f) => !deleted.has(f) && f.name).map((f) => ({ f, cb: h('input', { type: 'checkbox' }) }));
    const sql = h('textarea', { rows: 3, value: i >= 0 ? draft.indexes[i] : '', class: 'plain-input mono', attrs: { 'aria-label': 'Index SQL' } });
    const gen = () => {
      const names = cols.filter((c) => c.cb.checked).map((c) => c.f.name);
      if (!names.length) return;
      const table = draft.name || 'collection';
      sql.value = `CREATE ${unique.checked ? 'UNIQUE ' : ''}INDEX \`idx_${table}_${names.join('_')}\` ON \`${table}\` (${names.map((n) => `\`${n}\``).join(', ')})`;
    };
    unique.addEventListener('change', gen);
    for (const c of cols) c.cb.addEventListener('change', gen);
    mount(m.body, h('div', { class: 'stack' },
      h('label', { class: 'check' }, unique, 'Unique'),
      h('div', {}, h('div', { class: 'small muted', text: 'Columns' }), h('div', { class: 'row wrap' }, cols.map((c) => h('label', { class: 'check' }, c.cb, c.f.name)))),
      h('div', {}, h('div', { class: 'small muted', text: 'CREATE INDEX statement' }), sql)));
    mount(m.footer, h('button', { class: 'plain', text: 'Cancel', onclick: () => m.close() }),
      h('button', { class: 'primary', text: 'Set index', onclick: () => {
        const v = sql.value.trim();
        if (!v) return m.close();
        if (i < 0) draft.indexes.push(v); else draft.indexes[i] = v;
        m.close();
        renderBody();
      } }));
  }

  function fieldsTab() {
    return h('div', { class: 'stack' },
      h('div', { class: 'fields-list' }, draft.fields.map((f, i) => fieldRow(f, i))),
      newFieldButton(),
      h('hr', { class: 'muted' }),
      indexesSection());
  }

  // --- rules ----------------------------------------------------------------------------

  function ruleBox(key, label, hint) {
    const locked = draft[key] === null || draft[key] === undefined;
    const ta = h('textarea', {
      rows: 2, value: draft[key] ?? '', disabled: locked, spellcheck: false,
      placeholder: locked ? '' : 'Leave empty to grant everyone access…',
      attrs: { 'aria-label': label, 'data-testid': `rule-${key}` },
    });
    ta.addEventListener('input', () => { draft[key] = ta.value; scheduleCheck(); });
    const lock = h('button', {
      class: 'small', attrs: { type: 'button', 'data-testid': `lock-${key}` },
      onclick: () => { draft[key] = locked ? '' : null; scheduleCheck(); renderBody(); },
    }, svg(locked ? icons.lock : icons.unlock), locked ? 'Unlock and set custom rule' : 'Set superusers only');
    const status = locked ? 'Superusers only' : draft[key] === '' ? 'Everyone (guests included)' : 'Custom rule';
    const err = errors[key];
    return h('div', { class: ['rule', locked && 'locked'], dataset: { rule: key } },
      h('div', { class: ['field', err && 'invalid'] }, h('label', {}, label, h('span', { class: 'badge', text: status })), ta),
      err ? h('div', { class: 'field-error', text: err.message, attrs: { 'data-error-for': key } }) : null,
      hint ? h('div', { class: 'hint small muted', text: hint }) : null,
      h('div', { class: 'row end' }, lock));
  }

  function rulesTab() {
    const fieldNames = draft.fields.filter((f) => !deleted.has(f)).map((f) => f.name).filter(Boolean);
    return h('div', {},
      h('p', { class: 'muted' }, 'Rules use the filter syntax: ', h('code', { text: "@request.auth.id != '' && status = 'published'" }),
        '. Locked = superusers only; empty = everyone. Each rule is checked by the node as you type.'),
      h('p', { class: 'small muted' }, 'Fields: ', fieldNames.join(', '), ' · ', '@request.auth.*, @request.body.*, @request.query.*, @request.method, @collection.NAME.*, @now'),
      RULES.map(([k, label]) => ruleBox(k, label)),
      draft.type === 'auth' ? AUTH_RULES.map(([k, label, hint]) => ruleBox(k, label, hint)) : null);
  }

  // --- auth options ---------------------------------------------------------------------

  function optionsTab() {
    const section = (title, ...children) => h('div', { class: 'card stack' }, h('h3', { text: title }), ...children);
    const tmpl = (path, title) => h('details', {}, h('summary', { text: title }),
      h('div', { class: 'stack' }, bound(draft, `${path}.subject`, 'text', 'Subject'), bound(draft, `${path}.body`, 'textarea', 'Body (HTML)', 'Placeholders: {APP_NAME}, {APP_URL}, {RECORD:email}, {TOKEN}, {OTP}…')));
    const token = (key, label) => bound(draft, `${key}.duration`, 'int', `${label} (seconds)`);
    return h('div', { class: 'stack' },
      section('Password authentication',
        bound(draft, 'passwordAuth.enabled', 'bool', 'Enable'),
        bound(draft, 'passwordAuth.identityFields', 'list', 'Identity fields', 'Fields a user may sign in with, e.g. email, username (each needs a unique index).')),
      section('One-time password (OTP)',
        bound(draft, 'otp.enabled', 'bool', 'Enable'),
        h('div', { class: 'grid' }, bound(draft, 'otp.duration', 'int', 'Duration (seconds)'), bound(draft, 'otp.length', 'int', 'Length')),
        tmpl('otp.emailTemplate', 'OTP email template')),
      section('Multi-factor authentication (MFA)',
        bound(draft, 'mfa.enabled', 'bool', 'Enable'),
        h('div', { class: 'grid' }, bound(draft, 'mfa.duration', 'int', 'Duration (seconds)')),
        bound(draft, 'mfa.rule', 'text', 'MFA rule', 'Empty: every sign-in needs a second method.')),
      section('OAuth2',
        bound(draft, 'oauth2.enabled', 'bool', 'Enable'),
        bound(draft, 'oauth2.providers', 'json', 'Providers', 'A list of {name, clientId, clientSecret, authURL, tokenURL, userInfoURL, displayName, pkce, extra}; stored secrets are kept when left out.'),
        bound(draft, 'oauth2.mappedFields', 'json', 'Mapped fields', '{id, name, username, avatarURL}')),
      section('Login alerts', bound(draft, 'authAlert.enabled', 'bool', 'Send an email on sign-in from a new location'), tmpl('authAlert.emailTemplate', 'Alert email template')),
      section('Token lifetimes',
        h('div', { class: 'grid' }, token('authToken', 'Auth'), token('verificationToken', 'Verification'), token('passwordResetToken', 'Password reset'), token('emailChangeToken', 'Email change'), token('fileToken', 'Protected file access'))),
      section('Mail templates',
        tmpl('verificationTemplate', 'Verification'), tmpl('resetPasswordTemplate', 'Password reset'), tmpl('confirmEmailChangeTemplate', 'Confirm email change')));
  }

  // --- server checks and save -----------------------------------------------------------

  function body() {
    const b = clone(draft);
    b.fields = draft.fields.filter((f) => !deleted.has(f)).map((f) => clone(f));
    return b;
  }

  // Live check of the draft (rules above all) through the node: nothing is written.
  let checkSeq = 0;
  const scheduleCheck = debounce(async () => {
    const seq = ++checkSeq;
    let next = {};
    try {
      await api('POST', '/api/collections/meta/validate', { body: body() });
    } catch (e) {
      if (e.status !== 400) return;
      next = e.data;
    }
    if (seq !== checkSeq) return;
    const ruleKeys = [...RULES, ...AUTH_RULES].map(([k]) => k);
    const changed = ruleKeys.some((k) => JSON.stringify(errors[k]) !== JSON.stringify(next[k]));
    // Only rule errors are refreshed live; other errors wait for Save.
    for (const k of ruleKeys) { if (next[k]) errors[k] = next[k]; else delete errors[k]; }
    if (changed) { renderTabs(); if (tab === 'rules') renderBody(); }
  }, 350);

  function showErrors(err) {
    errors = err.data || {};
    const known = new Set(['name', 'fields', 'indexes', ...RULES.map(([k]) => k), ...AUTH_RULES.map(([k]) => k)]);
    const other = Object.entries(errors).filter(([k]) => !known.has(k)).map(([k, v]) => `${k}: ${v?.message ?? JSON.stringify(v)}`);
    mount(generalError, h('strong', { text: err.message }), other.length ? h('div', { text: other.join(' · ') }) : null);
    generalError.classList.remove('hidden');
    nameBox.classList.toggle('invalid', !!errors.name);
    nameBox.nextElementSibling?.classList?.contains('field-error') && nameBox.nextElementSibling.remove();
    if (errors.name) nameBox.after(h('div', { class: 'field-error', text: errors.name.message, attrs: { 'data-error-for': 'name' } }));
    if (errors.fields || errors.indexes) tab = 'fields';
    else if ([...RULES, ...AUTH_RULES].some(([k]) => errors[k])) tab = 'rules';
    renderTabs();
    renderBody();
  }

  const save = h('button', { class: 'primary', text: isNew ? 'Create' : 'Save changes', attrs: { 'data-testid': 'collection-save' } });
  save.addEventListener('click', () => busy(save, async () => {
    if (deleted.size && !(await confirmDialog(`Delete the field(s) ${[...deleted].map((f) => f.name).join(', ')} and all their data?`, { yes: 'Save and delete', danger: true }))) return;
    generalError.classList.add('hidden');
    try {
      const saved = isNew
        ? await api('POST', '/api/collections', { body: body() })
        : await api('PATCH', `/api/collections/${encodeURIComponent(collection.id)}`, { body: body() });
      toast(isNew ? `Collection ${saved.name} created.` : `Collection ${saved.name} saved.`, 'success');
      panel.close();
      onSaved?.(saved);
    } catch (err) {
      showErrors(err);
    }
  }));

  if (!isNew) {
    const menu = dropdown(h('button', { class: 'plain icon-only', attrs: { type: 'button', 'aria-label': 'Collection actions', 'data-testid': 'collection-actions' } }, svg(icons.more)), [
      { label: 'Copy JSON', onclick: () => copyText(JSON.stringify(collection, null, 2)) },
      { label: 'Duplicate', onclick: () => {
        panel.close();
        const copy = clone(collection);
        delete copy.id;
        copy.name = `${collection.name}_duplicate`;
        copy.system = false;
        copy.fields = copy.fields.filter((f) => !f.system || f.primaryKey).map((f) => { const g = { ...f }; delete g.id; return g; });
        copy.indexes = [];
        openCollection(null, ctx, { onSaved, draft: copy });
      } },
      ...(collection.system ? [] : [{ label: 'Delete collection', danger: true, onclick: async () => {
        if (!(await confirmDialog(`Do you really want to delete the collection ${collection.name} and all its records?`, { yes: 'Delete', danger: true }))) return;
        try {
          await api('DELETE', `/api/collections/${encodeURIComponent(collection.id)}`);
          toast(`Collection ${collection.name} deleted.`, 'success');
          panel.close();
          onDeleted?.();
        } catch (err) {
          toast(err.message, 'error');
        }
      } }]),
    ]);
    panel.header.insertBefore(menu, panel.header.lastChild);
  }
  mount(panel.footer, h('button', { class: 'plain', text: 'Close', onclick: () => panel.requestClose() }), save);
  renderTabs();
  renderBody();
  if (isNew) nameInput.focus();
  return panel;
}
