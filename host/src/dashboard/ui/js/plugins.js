// The Plugins page: upload a component (world, size and sha256 shown once validated), bind,
// unbind and roll back per collection and role, try a resolver on two pasted records, call
// and failure counters, and what the outbound filters let out.

import { api, allCollections } from './api.js';
import { h, mount, overlay, toast, busy, confirmDialog, svg, copyText, formatBytes } from './dom.js';
import { icons } from './icons.js';

const ROLES_BY_WORLD = {
  resolver: ['resolver'],
  filter: ['outbound-filter', 'inbound-filter'],
  'snapshot-policy': ['snapshot-policy'],
};

function short(sha) {
  return h('button', { class: 'small plain mono', text: `${sha.slice(0, 12)}…`, attrs: { title: `${sha} (click to copy)` }, onclick: (e) => { e.stopPropagation(); copyText(sha); } });
}

function targetText(t) {
  // Bindings name collections by id (a rename keeps them); answers add the current name.
  const c = t.collectionName ?? t.collection;
  return c ? `${t.role} of ${c}` : t.role;
}

function fieldBox(label, control, hint) {
  return h('div', { class: 'field' }, h('label', { text: label }), control, hint ? h('div', { class: 'hint', text: hint }) : null);
}

function showError(box, err) {
  mount(box, err.message, Object.keys(err.data || {}).length ? h('div', { class: 'small', text: JSON.stringify(err.data) }) : null);
  box.classList.remove('hidden');
}

function uploadModal(done) {
  const m = overlay({ title: 'Upload a plugin', kind: 'modal', testid: 'upload-plugin' });
  const file = h('input', { type: 'file', accept: '.wasm,application/wasm', attrs: { 'data-testid': 'plugin-file' } });
  const name = h('input', { placeholder: 'e.g. field-merge', attrs: { 'data-testid': 'plugin-name' } });
  file.addEventListener('change', () => {
    if (!name.value && file.files[0]) name.value = file.files[0].name.replace(/\.wasm$/, '');
  });
  const err = h('div', { class: 'alert danger hidden' });
  mount(m.body, h('div', { class: 'stack' },
    h('p', { class: 'muted', text: 'A WebAssembly component implementing a syncbase:plugin world (resolver, filter or snapshot-policy). It is validated and compiled before it is stored; a name already taken gets a new version.' }),
    fieldBox('Component (.wasm)', file), fieldBox('Name', name), err));
  const go = h('button', { class: 'primary', text: 'Upload', attrs: { 'data-testid': 'upload-submit' } });
  go.addEventListener('click', () => busy(go, async () => {
    err.classList.add('hidden');
    if (!file.files[0]) return showError(err, { message: 'Choose a .wasm file.' });
    const form = new FormData();
    form.append('name', name.value.trim());
    form.append('file', file.files[0]);
    try {
      const meta = await api('POST', '/api/plugins', { body: form });
      toast(`Uploaded ${meta.name} v${meta.version} (${meta.world}).`, 'success');
      m.close();
      done();
    } catch (e) {
      showError(err, e);
    }
  }));
  mount(m.footer, h('button', { class: 'plain', text: 'Cancel', onclick: () => m.close() }), go);
}

function bindModal(plugins, collections, preset, done) {
  const m = overlay({ title: 'Bind a plugin', kind: 'modal', testid: 'bind-plugin' });
  const names = [...new Set(plugins.map((p) => p.name))].sort();
  const plugin = h('select', { attrs: { 'data-testid': 'bind-plugin-name' } }, names.map((n) => h('option', { value: n, text: n, selected: n === preset?.name })));
  const version = h('select', { attrs: { 'data-testid': 'bind-version' } });
  const role = h('select', { attrs: { 'data-testid': 'bind-role' } });
  const coll = h('select', { attrs: { 'data-testid': 'bind-collection' } }, collections.filter((c) => c.name !== '_superusers').map((c) => h('option', { value: c.name, text: c.name })));
  const config = h('textarea', { rows: 3, placeholder: 'Handed to the plugin\'s configure (JSON text by convention); empty for none.', attrs: { 'data-testid': 'bind-config' } });
  const collBox = fieldBox('Collection', coll);
  const sync = () => {
    const versions = plugins.filter((p) => p.name === plugin.value).sort((a, b) => b.version - a.version);
    mount(version, versions.map((p) => h('option', { value: p.version, text: `v${p.version} · ${p.world} · ${p.sha256.slice(0, 10)}`, selected: p.version === preset?.version })));
    const world = versions[0]?.world;
    mount(role, (ROLES_BY_WORLD[world] || []).map((r) => h('option', { value: r, text: r })));
    collBox.classList.toggle('hidden', role.value === 'snapshot-policy');
  };
  plugin.addEventListener('change', sync);
  role.addEventListener('change', sync);
  sync();
  const err = h('div', { class: 'alert danger hidden', attrs: { 'data-testid': 'bind-error' } });
  mount(m.body, h('div', { class: 'stack' }, fieldBox('Plugin', plugin), fieldBox('Version', version), fieldBox('Role', role), collBox,
    fieldBox('Config', config), err,
    h('p', { class: 'small muted', text: 'On a cluster the binding is an event in the log: every node switches at the same position.' })));
  const go = h('button', { class: 'primary', text: 'Bind', attrs: { 'data-testid': 'bind-submit' } });
  go.addEventListener('click', () => busy(go, async () => {
    err.classList.add('hidden');
    const body = { as: role.value, version: Number(version.value), config: config.value };
    if (role.value !== 'snapshot-policy') body.collection = coll.value;
    try {
      await api('POST', `/api/plugins/${encodeURIComponent(plugin.value)}/bind`, { body });
      toast(`Bound ${plugin.value} as ${body.as}${body.collection ? ` of ${body.collection}` : ''}.`, 'success');
      m.close();
      done();
    } catch (e) {
      showError(err, e);
    }
  }));
  mount(m.footer, h('button', { class: 'plain', text: 'Cancel', onclick: () => m.close() }), go);
}

function resolveModal(p, collections) {
  const m = overlay({ title: `Try ${p.name} v${p.version}`, kind: 'modal', wide: true, testid: 'dry-run' });
  const coll = h('select', {}, collections.map((c) => h('option', { value: c.name, text: c.name })));
  const id = h('input', { value: 'rec000000000001' });
  const op = h('select', {}, ['update', 'create', 'delete'].map((o) => h('option', { value: o, text: o })));
  const cur = h('textarea', { rows: 8, class: 'mono', value: '{\n  "title": "current",\n  "views": 1\n}', attrs: { 'data-testid': 'dry-current' } });
  const inc = h('textarea', { rows: 8, class: 'mono', value: '{\n  "title": "incoming",\n  "views": 2\n}', attrs: { 'data-testid': 'dry-incoming' } });
  const before = h('textarea', { rows: 3, class: 'mono', placeholder: 'Optional: the old values of the fields the incoming change modified, e.g. {"views": 1}' });
  const curHlc = h('input', { type: 'number', value: 1000 });
  const incHlc = h('input', { type: 'number', value: 2000 });
  const config = h('input', { placeholder: 'configure() text (optional)' });
  const result = h('div', { attrs: { 'data-testid': 'dry-result' } });
  mount(m.body, h('div', { class: 'stack' },
    h('p', { class: 'muted', text: 'Runs the resolver on a current and an incoming version, as the fold would on a conflict, without binding it. Nothing is written.' }),
    h('div', { class: 'grid' }, fieldBox('Collection', coll), fieldBox('Record id', id), fieldBox('Incoming op', op), fieldBox('Config', config)),
    h('div', { class: 'grid two' },
      h('div', { class: 'stack' }, fieldBox('Current record (JSON)', cur), fieldBox('Current HLC', curHlc)),
      h('div', { class: 'stack' }, fieldBox('Incoming record (JSON)', inc), fieldBox('Incoming HLC', incHlc))),
    fieldBox('Incoming "before" (JSON)', before),
    result));
  const go = h('button', { class: 'primary', text: 'Resolve', attrs: { 'data-testid': 'dry-submit' } });
  go.addEventListener('click', () => busy(go, async () => {
    const parse = (ta, label) => {
      if (!ta.value.trim()) return null;
      try { return JSON.parse(ta.value); } catch (e) { throw new Error(`${label}: ${e.message}`); }
    };
    try {
      const body = {
        version: p.version,
        config: config.value,
        current: { data: parse(cur, 'Current record'), hlc: Number(curHlc.value), origin: 'n1' },
        incoming: { op: op.value, collection: coll.value, id: id.value, data: parse(inc, 'Incoming record'), hlc: Number(incHlc.value), origin: 'n2', before: parse(before, 'Before') },
      };
      const out = await api('POST', `/api/plugins/${encodeURIComponent(p.name)}/resolve`, { body });
      const by = out.decidedBy || {};
      mount(result, h('div', { class: 'card stack' },
        h('div', {}, h('strong', { text: 'Resolution: ' }), typeof out.resolution === 'string' ? h('span', { class: 'badge info', text: out.resolution }) : h('span', { class: 'badge info', text: 'merged' })),
        typeof out.resolution === 'object' ? h('pre', { class: 'mono', text: JSON.stringify(out.resolution.merged, null, 2) }) : null,
        h('div', { class: 'small' }, 'Decided by: ', by.by === 'fallback' ? h('span', { class: 'badge warn', text: `fallback (the plugin failed: ${by.failure}) ${by.detail || ''}` }) : h('span', { class: 'badge success', text: by.by === 'plugin' ? `${by.plugin} v${by.version}` : by.by }))));
    } catch (e) {
      mount(result, h('div', { class: 'alert danger', text: e.message }));
    }
  }));
  mount(m.footer, h('button', { class: 'plain', text: 'Close', onclick: () => m.close() }), go);
}

export async function pluginsPage(root) {
  const main = h('main', { class: 'page stack' });
  mount(root, main);
  let plugins = [];
  let collections = [];
  let bindings = [];
  let outbound = null;
  const load = async () => {
    try {
      [plugins, collections, bindings, outbound] = await Promise.all([
        api('GET', '/api/plugins').then((r) => r.items),
        allCollections(),
        api('GET', '/api/plugins/bindings'),
        api('GET', '/api/plugins/outbound'),
      ]);
    } catch (e) {
      mount(main, h('div', { class: 'alert danger', text: e.message }));
      return;
    }
    render();
  };

  const render = () => {
    const sorted = [...plugins].sort((a, b) => a.name.localeCompare(b.name) || b.version - a.version);
    const header = h('div', { class: 'page-header' },
      h('div', { class: 'breadcrumbs' }, h('strong', { text: 'Plugins' })),
      h('button', { class: 'plain icon-only', attrs: { 'aria-label': 'Refresh' }, onclick: load }, svg(icons.refresh)),
      h('span', { class: 'grow' }),
      h('button', { attrs: { 'data-testid': 'bind-open' }, disabled: !plugins.length, onclick: () => bindModal(plugins, collections, null, load) }, 'Bind…'),
      h('button', { class: 'primary', attrs: { 'data-testid': 'upload-open' }, onclick: () => uploadModal(load) }, svg(icons.plus), 'Upload plugin'));

    const pluginRows = sorted.map((p) => {
      const mtr = p.metrics || {};
      const fallbacks = mtr.failures ?? 0;
      const traps = (mtr.traps ?? 0) + (mtr.out_of_fuel ?? 0) + (mtr.memory_cap ?? 0) + (mtr.stack_overflow ?? 0);
      return h('tr', { dataset: { plugin: p.name, version: p.version } },
        h('td', {}, h('strong', { text: p.name }), ' ', h('span', { class: 'muted', text: `v${p.version}` })),
        h('td', {}, h('span', { class: 'badge', text: p.world })),
        h('td', { class: 'nowrap', text: formatBytes(p.size) }),
        h('td', {}, short(p.sha256)),
        h('td', { class: 'small' }, (p.bindings || []).map((b) => h('div', { text: `${targetText(b.target)} (${b.state})` }))),
        h('td', { class: 'nowrap small', attrs: { title: JSON.stringify(mtr) } }, `${mtr.calls ?? 0} calls · `, h('span', { class: traps ? 'txt-danger' : '', text: `${traps} traps` }), ` · `, h('span', { class: fallbacks ? 'txt-danger' : '', text: `${fallbacks} fallbacks` })),
        h('td', { class: 'narrow' }, h('div', { class: 'row' },
          h('button', { class: 'small', text: 'Bind', onclick: () => bindModal(plugins, collections, p, load) }),
          p.world === 'resolver' ? h('button', { class: 'small', text: 'Try', attrs: { 'data-testid': `try-${p.name}` }, onclick: () => resolveModal(p, collections) }) : null,
          h('button', { class: 'small plain icon-only', attrs: { 'aria-label': `Delete ${p.name} v${p.version}` }, onclick: async () => {
            if (!(await confirmDialog(`Delete ${p.name} v${p.version}? A bound version cannot be deleted.`, { yes: 'Delete', danger: true }))) return;
            try { await api('DELETE', `/api/plugins/${encodeURIComponent(p.name)}`, { query: { version: p.version } }); toast('Plugin version deleted.', 'success'); load(); } catch (e) { toast(e.message, 'error'); }
          } }, svg(icons.trash)))));
    });

    const act = (path, t, label) => async () => {
      const body = { as: t.role };
      if (t.collection) body.collection = t.collection;
      try { await api('POST', path, { body }); toast(label, 'success'); load(); } catch (e) { toast(e.message, 'error'); }
    };
    const bindingRows = bindings.map((b) => h('tr', { dataset: { role: b.role, collection: b.collectionName ?? b.collection ?? '' } },
      h('td', { text: b.collectionName ?? b.collection ?? '(node)' }),
      h('td', {}, h('span', { class: 'badge', text: b.role })),
      h('td', {}, b.active ? h('span', {}, h('strong', { text: b.active.plugin }), ` v${b.active.version}`) : h('span', { class: 'muted', text: 'unbound (built-in default)' })),
      h('td', { class: 'small mono cell', text: b.active?.config || '' }),
      h('td', { class: 'small', text: b.previous ? `${b.previous.plugin} v${b.previous.version}` : '—' }),
      h('td', { class: 'narrow' }, h('div', { class: 'row' },
        b.active ? h('button', { class: 'small', text: 'Unbind', onclick: act('/api/plugins/unbind', b, 'Unbound.') }) : null,
        b.previous ? h('button', { class: 'small', text: 'Roll back', onclick: act('/api/plugins/rollback', b, 'Rolled back.') }) : null))));

    const out = outbound || {};
    const outboundRows = (out.items || []).slice(-50).reverse().map((e) => h('tr', {},
      h('td', { class: 'mono small', text: e.eventId }), h('td', { text: e.op }), h('td', { text: e.collection }), h('td', { class: 'mono small', text: e.id }),
      h('td', {}, h('span', { class: ['badge', e.verdict === 'replace' && 'warn'], text: e.verdict })),
      h('td', { class: 'mono small cell', text: e.data ? JSON.stringify(e.data) : '' })));

    mount(main, header,
      h('div', { class: 'card stack' }, h('h3', { text: `Uploaded (${plugins.length})` }),
        plugins.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'data', attrs: { 'data-testid': 'plugins-table' } },
          h('thead', {}, h('tr', {}, ['Plugin', 'World', 'Size', 'sha256', 'Bound as', 'Calls', ''].map((t) => h('th', { text: t })))),
          h('tbody', {}, pluginRows)))
          : h('p', { class: 'muted' }, 'No plugins yet. Build one (', h('code', { text: 'scripts/build-plugin plugins/field-merge' }), ') and upload the .wasm here.')),
      h('div', { class: 'card stack' }, h('h3', { text: 'Bindings' }),
        bindings.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'data', attrs: { 'data-testid': 'bindings-table' } },
          h('thead', {}, h('tr', {}, ['Collection', 'Role', 'Active', 'Config', 'Previous', ''].map((t) => h('th', { text: t })))),
          h('tbody', {}, bindingRows)))
          : h('p', { class: 'muted', text: 'Nothing bound: every collection uses the built-in last-writer-wins resolver and no filters.' })),
      h('div', { class: 'card stack', attrs: { 'data-testid': 'outbound' } }, h('h3', { text: 'Outbound filter log' }),
        h('div', { class: 'row wrap small' }, `passed ${out.passed ?? 0}`, ' · ', `rewritten ${out.rewritten ?? 0}`, ' · ', `dropped ${out.dropped ?? 0}`, ' · ', `failures ${out.failures ?? 0}`),
        outboundRows.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
          h('thead', {}, h('tr', {}, ['Event', 'Op', 'Collection', 'Record', 'Verdict', 'Data as published'].map((t) => h('th', { text: t })))),
          h('tbody', {}, outboundRows)))
          : h('p', { class: 'muted', text: 'No change has passed an outbound filter yet.' })));
  };
  await load();
}
