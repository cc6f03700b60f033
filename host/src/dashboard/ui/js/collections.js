// The Collections page: the sidebar of collections (system ones folded away, as PocketBase
// does) and the selected collection's records, with its editor behind the cog.

import { allCollections } from './api.js';
import { h, mount, svg, toast } from './dom.js';
import { icons } from './icons.js';
import { href, navigate } from './router.js';
import { recordsView } from './records.js';
import { openCollection } from './collection_editor.js';

const SHOW_SYSTEM_KEY = 'syncbase_dashboard_show_system';

export async function collectionsPage(root, routeInfo) {
  let collections;
  try {
    collections = await allCollections();
  } catch (e) {
    mount(root, h('div', { class: 'page' }, h('div', { class: 'alert danger', text: e.message })));
    return;
  }
  const byName = (a, b) => a.name.localeCompare(b.name);
  const regular = collections.filter((c) => !c.system || c.name === 'users').sort(byName);
  const system = collections.filter((c) => c.system && c.name !== 'users').sort(byName);
  const wanted = routeInfo.query.collection;
  const current = collections.find((c) => c.name === wanted || c.id === wanted) || regular[0] || collections[0];
  const ctx = { collections, collectionsById: Object.fromEntries(collections.map((c) => [c.id, c])) };

  // A changed schema: re-read everything and show the (renamed) collection.
  const reload = (name) => navigate('#/collections', { collection: name ?? current?.name });
  const editorCallbacks = { onSaved: (c) => reload(c.name), onDeleted: () => navigate('#/collections') };

  // Sidebar.
  const filterInput = h('input', { class: 'plain-input', placeholder: 'Search collections…', attrs: { 'aria-label': 'Search collections' } });
  const list = h('div', { class: 'stack-tight' });
  let showSystem = localStorage.getItem(SHOW_SYSTEM_KEY) === '1' || (current && system.includes(current));
  const item = (c) => h('a', {
    class: ['item', c === current && 'active'],
    href: href('#/collections', { collection: c.name }),
    dataset: { collection: c.name },
  }, svg(c.type === 'auth' ? icons.users : icons.folder), h('span', { class: 'ellipsis', text: c.name }));
  const renderList = () => {
    const q = filterInput.value.trim().toLowerCase();
    const match = (c) => !q || c.name.toLowerCase().includes(q);
    const sysToggle = h('button', { class: 'plain', text: showSystem ? '▾' : '▸', attrs: { 'aria-label': 'Toggle system collections' }, onclick: () => {
      showSystem = !showSystem;
      localStorage.setItem(SHOW_SYSTEM_KEY, showSystem ? '1' : '0');
      renderList();
    } });
    mount(list,
      h('div', { class: 'section', text: 'Collections' }),
      regular.filter(match).map(item),
      h('div', { class: 'section' }, 'System', sysToggle),
      showSystem || q ? system.filter(match).map(item) : null);
  };
  filterInput.addEventListener('input', renderList);
  renderList();
  const newBtn = h('button', { attrs: { 'data-testid': 'new-collection' }, onclick: () => openCollection(null, ctx, editorCallbacks) }, svg(icons.plus), 'New collection');
  const sidebar = h('aside', { class: 'sidebar' }, filterInput, list, newBtn);

  // Main.
  const main = h('main', { class: 'page' });
  if (!current) {
    mount(main, h('p', { class: 'muted', text: 'No collections yet.' }));
  } else {
    const tableRoot = h('div');
    let view;
    const header = h('div', { class: 'page-header' },
      h('div', { class: 'breadcrumbs' }, h('span', { class: 'crumb', text: 'Collections' }), h('span', { class: 'sep', text: '/' }), h('strong', { text: current.name, attrs: { 'data-testid': 'current-collection' } })),
      h('button', { class: 'plain icon-only', attrs: { 'aria-label': 'Edit collection', title: 'Edit collection', 'data-testid': 'edit-collection' }, onclick: () => openCollection(current, ctx, editorCallbacks) }, svg(icons.cog)),
      h('button', { class: 'plain icon-only', attrs: { 'aria-label': 'Refresh', title: 'Refresh' }, onclick: () => { view.reload(); toast('Refreshed.'); } }, svg(icons.refresh)),
      h('span', { class: 'grow' }),
      h('button', { class: 'primary', attrs: { 'data-testid': 'new-record' }, onclick: () => view.create() }, svg(icons.plus), 'New record'));
    mount(main, header, tableRoot);
    const q = routeInfo.query;
    view = recordsView(tableRoot, current, ctx, {
      filter: q.filter || '',
      sort: q.sort ?? (current.fields.some((f) => f.name === 'created') ? '-created' : ''),
      page: Number(q.page) || 1,
      perPage: Number(q.perPage) || 30,
    });
  }
  mount(root, h('div', { class: 'body' }, sidebar, main));
}
