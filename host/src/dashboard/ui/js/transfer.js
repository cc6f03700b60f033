// Export and import of the collections JSON, in PocketBase's format (an array of collection
// objects), so a schema moves between PocketBase and Syncbase or between environments.

import { api, allCollections } from './api.js';
import { h, mount, toast, busy, download, copyText, confirmDialog } from './dom.js';
import { navigate } from './router.js';

const clone = (v) => JSON.parse(JSON.stringify(v));

/** What PocketBase's export writes: no timestamps, no OAuth2 providers (they hold secrets). */
function exportable(c) {
  const out = clone(c);
  delete out.created;
  delete out.updated;
  if (out.oauth2) delete out.oauth2.providers;
  return out;
}

export async function exportPage(root) {
  const collections = await allCollections();
  const chosen = new Set(collections.map((c) => c.id));
  const preview = h('textarea', { class: 'plain-input mono', rows: 22, readOnly: true, attrs: { 'data-testid': 'export-json' } });
  const text = () => JSON.stringify(collections.filter((c) => chosen.has(c.id)).map(exportable), null, 2);
  const refresh = () => { preview.value = text(); };
  const picks = collections.map((c) => {
    const cb = h('input', { type: 'checkbox', checked: true });
    cb.addEventListener('change', () => { if (cb.checked) chosen.add(c.id); else chosen.delete(c.id); refresh(); });
    return h('label', { class: 'check' }, cb, c.name);
  });
  refresh();
  mount(root,
    h('p', { class: 'muted', text: 'The collections as JSON (PocketBase\'s format). Import it on another node, or into PocketBase, from Settings → Import collections.' }),
    h('div', { class: 'row wrap' }, picks),
    preview,
    h('div', { class: 'row end' },
      h('button', { text: 'Copy', onclick: () => copyText(preview.value) }),
      h('button', { class: 'primary', text: 'Download as JSON', attrs: { 'data-testid': 'export-download' }, onclick: () => download(`sb_schema_${new Date().toISOString().slice(0, 10)}.json`, preview.value) })));
}

/** Which collections an import adds, changes and (with deleteMissing) removes. */
function diff(current, incoming, deleteMissing) {
  const byKey = new Map();
  for (const c of current) { byKey.set(c.id, c); byKey.set(c.name, c); }
  const seen = new Set();
  const added = [];
  const changed = [];
  for (const c of incoming) {
    const old = byKey.get(c.id) || byKey.get(c.name);
    if (!old) { added.push(c.name); continue; }
    seen.add(old.id);
    const a = JSON.stringify(exportable(old));
    const b = JSON.stringify({ ...exportable(old), ...exportable(c) });
    if (a !== b) changed.push(c.name);
  }
  const removed = deleteMissing ? current.filter((c) => !seen.has(c.id) && !c.system).map((c) => c.name) : [];
  return { added, changed, removed };
}

export async function importPage(root) {
  const current = await allCollections();
  const input = h('textarea', { class: 'plain-input mono', rows: 18, placeholder: 'Paste the collections JSON here, or load a file…', attrs: { 'data-testid': 'import-json' } });
  const file = h('input', { type: 'file', accept: '.json,application/json' });
  file.addEventListener('change', async () => {
    if (file.files[0]) { input.value = await file.files[0].text(); review(); }
  });
  const deleteMissing = h('input', { type: 'checkbox' });
  const summary = h('div', { attrs: { 'data-testid': 'import-review' } });
  const go = h('button', { class: 'primary', text: 'Review and import', disabled: true, attrs: { 'data-testid': 'import-submit' } });
  let parsed = null;
  const review = () => {
    parsed = null;
    go.disabled = true;
    if (!input.value.trim()) { mount(summary); return; }
    try {
      const v = JSON.parse(input.value);
      if (!Array.isArray(v)) throw new Error('expected an array of collections');
      parsed = v;
    } catch (e) {
      mount(summary, h('div', { class: 'alert danger', text: `Invalid collections JSON: ${e.message}` }));
      return;
    }
    const d = diff(current, parsed, deleteMissing.checked);
    mount(summary, h('div', { class: 'card small stack' },
      h('div', {}, h('strong', { text: 'Added: ' }), d.added.join(', ') || 'none'),
      h('div', {}, h('strong', { text: 'Changed: ' }), d.changed.join(', ') || 'none'),
      h('div', { class: d.removed.length ? 'txt-danger' : '' }, h('strong', { text: 'Deleted (with their records): ' }), d.removed.join(', ') || 'none')));
    go.disabled = false;
  };
  input.addEventListener('input', review);
  deleteMissing.addEventListener('change', review);
  go.addEventListener('click', () => busy(go, async () => {
    if (!parsed) return;
    const d = diff(current, parsed, deleteMissing.checked);
    if (d.removed.length && !(await confirmDialog(`This deletes ${d.removed.join(', ')} and all their records. Continue?`, { yes: 'Import', danger: true }))) return;
    try {
      await api('PUT', '/api/collections/import', { body: { collections: parsed, deleteMissing: deleteMissing.checked } });
      toast('Collections imported.', 'success');
      navigate('#/collections');
    } catch (e) {
      const details = Object.keys(e.data || {}).length ? JSON.stringify(e.data) : '';
      mount(summary, h('div', { class: 'alert danger', attrs: { 'data-testid': 'import-error' } }, h('strong', { text: e.message }), details ? h('pre', { class: 'mono small', text: details }) : null));
    }
  }));
  mount(root,
    h('p', { class: 'muted', text: 'Paste or load a collections JSON exported from Syncbase or PocketBase. Collections are matched by id, then by name.' }),
    h('div', { class: 'row' }, file),
    input,
    h('label', { class: 'check' }, deleteMissing, 'Delete the collections (and their records) that are not in the import'),
    summary,
    h('div', { class: 'row end' }, go));
}
