// The record panel: create, edit, duplicate and delete one record. Inputs per field type come
// from inputs.js; the server's validation errors are shown under the field they name.

import { api } from './api.js';
import { h, mount, overlay, toast, confirmDialog, busy, dropdown, copyText, svg } from './dom.js';
import { icons } from './icons.js';
import { fieldInput } from './inputs.js';

/** Fields the editor shows: all but hidden ones (an auth collection's password excepted). */
function editableFields(collection) {
  return collection.fields.filter((f) => !(f.hidden && f.type !== 'password') && f.name !== 'tokenKey');
}

/**
 * Opens the record panel. `record` null creates; `onSaved(record)` and `onDeleted()` let the
 * table refresh.
 */
export function openRecord(collection, record, ctx, { onSaved, onDeleted, duplicateOf } = {}) {
  const isNew = !record;
  const source = record || duplicateOf || {};
  const panel = overlay({ testid: 'record-panel' });
  panel.setTitle(h('span', {}, isNew ? 'New ' : 'Edit ', h('strong', { text: collection.name }), ' record'));
  const inputs = [];
  const form = h('form', { class: 'stack', attrs: { novalidate: true } });
  for (const f of editableFields(collection)) {
    let value = source[f.name];
    if (duplicateOf && (f.primaryKey || f.type === 'autodate')) value = undefined;
    const input = fieldInput(f, value, { ...ctx, collection, isNew, record: source });
    inputs.push({ field: f, input });
    form.appendChild(h('div', { class: 'record-field' }, input.el));
  }
  const generalError = h('div', { class: 'alert danger hidden', attrs: { 'data-testid': 'record-error' } });
  mount(panel.body, generalError, form);

  const clearErrors = () => {
    generalError.classList.add('hidden');
    for (const el of panel.body.querySelectorAll('.field-error')) el.remove();
    for (const el of panel.body.querySelectorAll('.field.invalid')) el.classList.remove('invalid');
  };

  const showErrors = (err) => {
    const unplaced = [];
    for (const [name, e] of Object.entries(err.data || {})) {
      const fieldBox = panel.body.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
      const msg = e?.message || JSON.stringify(e);
      if (fieldBox) {
        fieldBox.classList.add('invalid');
        fieldBox.after(h('div', { class: 'field-error', text: msg, attrs: { 'data-error-for': name } }));
      } else {
        unplaced.push(`${name}: ${msg}`);
      }
    }
    mount(generalError, h('strong', { text: err.message }), unplaced.length ? h('div', { text: unplaced.join(' · ') }) : null);
    generalError.classList.remove('hidden');
    panel.body.querySelector('.field.invalid')?.scrollIntoView({ block: 'center' });
  };

  const collect = () => {
    const body = {};
    for (const { field, input } of inputs) {
      const v = input.get();
      if (v === undefined) continue;
      if (input.spread) Object.assign(body, v);
      else body[field.name] = v;
    }
    return body;
  };

  const save = h('button', { class: 'primary', text: isNew ? 'Create' : 'Save changes', attrs: { type: 'submit', 'data-testid': 'record-save' } });
  const submit = (e) => {
    e?.preventDefault();
    busy(save, async () => {
      clearErrors();
      const body = collect();
      const path = `/api/collections/${encodeURIComponent(collection.name)}/records`;
      try {
        const saved = isNew
          ? await api('POST', path, { body })
          : await api('PATCH', `${path}/${encodeURIComponent(record.id)}`, { body });
        toast(isNew ? 'Record created.' : 'Record saved.', 'success');
        panel.close();
        onSaved?.(saved);
      } catch (err) {
        showErrors(err);
      }
    });
  };
  form.addEventListener('submit', submit);
  save.addEventListener('click', submit);

  const extras = [];
  if (!isNew) {
    extras.push(dropdown(h('button', { class: 'plain icon-only', attrs: { 'aria-label': 'Record actions', type: 'button' } }, svg(icons.more)), [
      { label: 'Copy raw JSON', onclick: () => copyText(JSON.stringify(record, null, 2)) },
      { label: 'Duplicate', onclick: () => { panel.close(); openRecord(collection, null, ctx, { onSaved, onDeleted, duplicateOf: record }); } },
      {
        label: 'Delete', danger: true, onclick: async () => {
          if (!(await confirmDialog('Do you really want to delete this record?', { yes: 'Delete', danger: true }))) return;
          try {
            await api('DELETE', `/api/collections/${encodeURIComponent(collection.name)}/records/${encodeURIComponent(record.id)}`);
            toast('Record deleted.', 'success');
            panel.close();
            onDeleted?.();
          } catch (err) {
            toast(err.message, 'error');
          }
        },
      },
    ]));
    panel.header.insertBefore(extras[0], panel.header.lastChild);
  }
  mount(panel.footer, h('button', { class: 'plain', text: 'Close', attrs: { type: 'button' }, onclick: () => panel.requestClose() }), save);
  panel.body.querySelector('input:not([readonly]), textarea, select')?.focus();
  return panel;
}
