// Record inputs, one per field type. Each returns `{ el, get() }`; `get()` gives the value to
// send (or `undefined` to leave the field out). Errors are shown by the record editor under
// the field's box (`.field-error` after `el`).

import { api, quote } from './api.js';
import { h, mount, overlay, debounce, busy } from './dom.js';
import { glyph, isMultiple, summary } from './fields.js';

function box(field, control, { hint, readonly } = {}) {
  const label = h('label', { class: field.required ? 'req' : '', attrs: { for: `f-${field.name}` } }, glyph(field.type), field.name);
  return h('div', { class: ['field', readonly && 'readonly'], dataset: { field: field.name } },
    label, control, hint ? h('div', { class: 'hint', text: hint }) : null);
}

/** PocketBase's `YYYY-MM-DD HH:MM:SS.mmmZ` ⇄ the `datetime-local` input's value, in UTC. */
function toLocalInput(v) {
  if (!v) return '';
  return v.replace(' ', 'T').replace(/Z$/, '').slice(0, 23);
}
function fromLocalInput(v) {
  if (!v) return '';
  let s = v.replace('T', ' ');
  if (s.length === 16) s += ':00';
  if (s.length === 19) s += '.000';
  return s + 'Z';
}

/**
 * The input for `field` holding `value`. `ctx`: { collection, collectionsById, isNew }.
 */
export function fieldInput(field, value, ctx) {
  const id = `f-${field.name}`;
  switch (field.type) {
    case 'bool': {
      const input = h('input', { type: 'checkbox', id, checked: !!value });
      const el = h('div', { class: 'field', dataset: { field: field.name } },
        h('label', { class: 'check' }, input, glyph('bool'), field.name));
      return { el, get: () => input.checked };
    }
    case 'number': {
      const input = h('input', { type: 'number', id, step: 'any', value: value ?? '' });
      return { el: box(field, input), get: () => (input.value === '' ? null : Number(input.value)) };
    }
    case 'email':
    case 'url':
    case 'text': {
      const isId = field.primaryKey;
      if (isId && !ctx.isNew) {
        const input = h('input', { id, value: value ?? '', readOnly: true });
        return { el: box(field, input, { readonly: true }), get: () => undefined };
      }
      const input = h('input', {
        id,
        type: field.type === 'text' ? 'text' : field.type,
        value: value ?? '',
        placeholder: isId || field.autogeneratePattern ? 'Leave empty to autogenerate…' : '',
      });
      return { el: box(field, input), get: () => (isId && input.value === '' ? undefined : input.value) };
    }
    case 'editor': {
      const ta = h('textarea', { id, value: value ?? '', rows: 6 });
      return { el: box(field, ta, { hint: 'HTML is stored as typed.' }), get: () => ta.value };
    }
    case 'date': {
      const input = h('input', { id, type: 'datetime-local', step: '0.001', value: toLocalInput(value) });
      const clear = h('button', { class: 'small plain', text: 'Clear', attrs: { type: 'button' }, onclick: () => { input.value = ''; } });
      return { el: box(field, h('div', { class: 'inline-row' }, input, clear), { hint: 'UTC' }), get: () => fromLocalInput(input.value) };
    }
    case 'autodate': {
      const input = h('input', { id, value: value || '(set by the server)', readOnly: true });
      return { el: box(field, input, { readonly: true }), get: () => undefined };
    }
    case 'select':
      return selectInput(field, value);
    case 'json': {
      const text = value === undefined || value === null ? '' : JSON.stringify(value, null, 2);
      const ta = h('textarea', { id, value: text, rows: 5, spellcheck: false });
      const state = h('span', { class: 'json-ok' });
      const check = () => {
        if (ta.value.trim() === '') { mount(state, 'empty: null'); state.className = 'json-ok'; return; }
        try { JSON.parse(ta.value); mount(state, 'valid JSON'); state.className = 'json-ok'; } catch (e) { mount(state, e.message); state.className = 'json-bad'; }
      };
      ta.addEventListener('input', check);
      check();
      const el = box(field, ta);
      el.querySelector('label').append(state);
      return {
        el,
        get: () => {
          if (ta.value.trim() === '') return null;
          try { return JSON.parse(ta.value); } catch { return ta.value; } // the server names the error
        },
      };
    }
    case 'relation':
      return relationInput(field, value, ctx);
    case 'password':
      return passwordInput(field, ctx);
    default: {
      const input = h('input', { id, value: typeof value === 'string' ? value : JSON.stringify(value ?? '') , readOnly: true });
      return { el: box(field, input, { readonly: true, hint: `The dashboard cannot edit ${field.type} fields yet.` }), get: () => undefined };
    }
  }
}

function selectInput(field, value) {
  const values = field.values || [];
  if (!isMultiple(field)) {
    const sel = h('select', { id: `f-${field.name}` },
      h('option', { value: '', text: '- Select -' }),
      values.map((v) => h('option', { value: v, text: v, selected: v === value })));
    return { el: box(field, sel), get: () => sel.value };
  }
  const chosen = new Set(Array.isArray(value) ? value : value ? [value] : []);
  const boxes = values.map((v) => {
    const cb = h('input', { type: 'checkbox', value: v, checked: chosen.has(v) });
    return { v, cb, el: h('label', { class: 'check' }, cb, v) };
  });
  const list = h('div', { class: 'row wrap', id: `f-${field.name}` }, boxes.map((b) => b.el));
  return {
    el: box(field, list, { hint: `Up to ${field.maxSelect}.` }),
    get: () => boxes.filter((b) => b.cb.checked).map((b) => b.v),
  };
}

function passwordInput(field, ctx) {
  const pass = h('input', { type: 'password', id: `f-${field.name}`, autocomplete: 'new-password' });
  const confirm = h('input', { type: 'password', id: 'f-passwordConfirm', autocomplete: 'new-password' });
  const inner = h('div', { class: 'grid two' },
    h('div', { class: 'field', dataset: { field: 'password' } }, h('label', { class: ctx.isNew ? 'req' : '' }, glyph('password'), 'password'), pass),
    h('div', { class: 'field', dataset: { field: 'passwordConfirm' } }, h('label', { class: ctx.isNew ? 'req' : '' }, 'passwordConfirm'), confirm));
  let el = inner;
  if (!ctx.isNew) {
    const toggle = h('input', { type: 'checkbox' });
    inner.classList.add('hidden');
    toggle.addEventListener('change', () => inner.classList.toggle('hidden', !toggle.checked));
    el = h('div', {}, h('label', { class: 'check' }, toggle, 'Change password'), inner);
  }
  return {
    el,
    get: () => (pass.value === '' && confirm.value === '' ? undefined : { password: pass.value, passwordConfirm: confirm.value }),
    spread: true,
  };
}

function relationInput(field, value, ctx) {
  const target = ctx.collectionsById[field.collectionId];
  let ids = Array.isArray(value) ? [...value] : value ? [value] : [];
  const multiple = isMultiple(field);
  const known = new Map();
  const expanded = ctx.record?.expand?.[field.name];
  for (const r of Array.isArray(expanded) ? expanded : expanded ? [expanded] : []) known.set(r.id, r);
  const chips = h('div', { class: 'row wrap' });
  const render = () => mount(chips,
    ids.length ? ids.map((id) => h('span', { class: 'chip', attrs: { title: id } },
      known.has(id) ? summary(target, known.get(id)) : id,
      h('button', { text: '✕', attrs: { type: 'button', 'aria-label': `Remove ${id}` }, onclick: () => { ids = ids.filter((x) => x !== id); render(); } }))) : h('span', { class: 'muted', text: 'No records selected.' }),
    h('button', {
      class: 'small', text: target ? 'Pick…' : 'Unknown collection', disabled: !target, attrs: { type: 'button' },
      onclick: () => pickRecords(target, { multiple, max: field.maxSelect || 1, selected: ids, known }).then((picked) => {
        if (picked) { ids = picked; render(); }
      }),
    }));
  render();
  return {
    el: box(field, chips, { hint: target ? `Records of ${target.name}${multiple ? `, up to ${field.maxSelect}` : ''}.` : '' }),
    get: () => (multiple ? ids : ids[0] ?? ''),
  };
}

/** The relation picker: searchable records of `target`; resolves with the chosen ids. */
export function pickRecords(target, { multiple, max, selected, known }) {
  return new Promise((resolve) => {
    let done = false;
    const chosen = [...selected];
    const m = overlay({ title: `Select ${target.name} records`, kind: 'modal', wide: true, testid: 'relation-picker', onClose: () => { if (!done) resolve(null); } });
    const search = h('input', { class: 'plain-input grow', placeholder: 'Search term or filter…' });
    const list = h('div', { class: 'list' });
    const load = async () => {
      const text = search.value.trim();
      let filter = '';
      if (text) {
        filter = /[=~<>!]/.test(text) ? text : ['id', ...target.fields.filter((f) => ['text', 'email', 'url', 'editor'].includes(f.type) && !f.hidden && f.name !== 'id').map((f) => f.name)]
          .map((n) => `${n} ~ ${quote(text)}`).join(' || ');
      }
      try {
        const page = await api('GET', `/api/collections/${encodeURIComponent(target.name)}/records`, { query: { perPage: 50, filter, sort: target.fields.some((f) => f.name === 'created') ? '-created' : '' } });
        mount(list, page.items.length ? page.items.map((r) => {
          known.set(r.id, r);
          const cb = h('input', { type: multiple ? 'checkbox' : 'radio', name: 'pick', checked: chosen.includes(r.id) });
          cb.addEventListener('change', () => {
            if (!multiple) chosen.splice(0, chosen.length, r.id);
            else if (cb.checked) { if (chosen.length >= max) { cb.checked = false; return; } chosen.push(r.id); } else chosen.splice(chosen.indexOf(r.id), 1);
          });
          return h('label', { class: 'check', dataset: { id: r.id } }, cb, h('span', { class: 'mono small', text: r.id }), summary(target, r));
        }) : h('p', { class: 'muted', text: 'No records found.' }));
      } catch (e) {
        mount(list, h('p', { class: 'txt-danger', text: e.message }));
      }
    };
    search.addEventListener('input', debounce(load, 250));
    mount(m.body, h('div', { class: 'relation-picker stack' }, h('div', { class: 'row' }, search), list));
    const pick = h('button', { class: 'primary', text: 'Set selection' });
    pick.addEventListener('click', () => busy(pick, async () => { done = true; m.close(); resolve(chosen); }));
    mount(m.footer, h('button', { class: 'plain', text: 'Cancel', onclick: () => m.close() }), pick);
    load();
  });
}
