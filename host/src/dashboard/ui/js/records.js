// The records table of one collection: search (PocketBase filter syntax or plain text), sort
// by column, pages, column choice (remembered per collection), bulk delete, and the record
// panel on click.

import { api } from './api.js';
import { h, mount, toast, svg, dropdown, confirmDialog, busy } from './dom.js';
import { icons } from './icons.js';
import { cell, glyph, searchToFilter } from './fields.js';
import { replaceQuery } from './router.js';
import { openRecord } from './record_editor.js';

const PER_PAGE = [10, 20, 30, 50, 100, 200];

function columnsKey(c) {
  return `syncbase_dashboard_columns_${c.id}`;
}

/** Columns hidden by the user for this collection (localStorage). */
function hiddenColumns(c) {
  try { return new Set(JSON.parse(localStorage.getItem(columnsKey(c)) || '[]')); } catch { return new Set(); }
}

/**
 * Renders the table of `collection` into `root`. `state` holds {filter, sort, page, perPage}
 * from the URL; `ctx` has collectionsById.
 */
export function recordsView(root, collection, ctx, state) {
  const hidden = hiddenColumns(collection);
  const selected = new Set();
  const fields = collection.fields.filter((f) => !f.hidden);
  const relationNames = fields.filter((f) => f.type === 'relation').map((f) => f.name);

  const searchInput = h('input', { value: state.filter || '', placeholder: 'Search term or filter like created > "2022-01-01"…', attrs: { 'aria-label': 'Search or filter', 'data-testid': 'search' } });
  const searchBar = h('form', { class: 'searchbar' }, svg(icons.search), searchInput,
    h('button', { class: 'small plain', text: 'Clear', attrs: { type: 'button' }, onclick: () => { searchInput.value = ''; apply(); } }));
  searchBar.addEventListener('submit', (e) => { e.preventDefault(); apply(); });
  const searchError = h('div', { class: 'field-error hidden', attrs: { 'data-testid': 'search-error' } });
  const bulkBar = h('div', { class: 'row hidden' });
  const tableWrap = h('div', { class: 'table-wrap' });
  const footer = h('div', { class: 'pager' });
  mount(root, searchBar, searchError, bulkBar, tableWrap, footer);

  function apply() {
    state.filter = searchInput.value.trim();
    state.page = 1;
    load();
  }

  function syncUrl() {
    replaceQuery({ collection: collection.name, filter: state.filter, sort: state.sort, page: state.page > 1 ? state.page : '', perPage: state.perPage !== 30 ? state.perPage : '' });
  }

  function toggleSort(name) {
    if (state.sort === name) state.sort = `-${name}`;
    else if (state.sort === `-${name}`) state.sort = '';
    else state.sort = name;
    load();
  }

  function columnMenu() {
    return dropdown(h('button', { class: 'plain small icon-only', attrs: { 'aria-label': 'Choose columns', title: 'Choose columns', type: 'button', 'data-testid': 'columns' } }, svg(icons.columns)), () =>
      fields.map((f) => {
        const cb = h('input', { type: 'checkbox', checked: !hidden.has(f.name) });
        cb.addEventListener('change', () => {
          if (cb.checked) hidden.delete(f.name); else hidden.add(f.name);
          localStorage.setItem(columnsKey(collection), JSON.stringify([...hidden]));
          render(lastPage);
        });
        return h('label', { class: 'check menu-item', dataset: { column: f.name } }, cb, glyph(f.type), f.name);
      }));
  }

  // One menu for the table's life: re-rendering the table moves it, so it stays open while
  // columns are toggled.
  const columns = columnMenu();
  let lastPage = null;
  function render(page) {
    lastPage = page;
    const cols = fields.filter((f) => !hidden.has(f.name));
    const all = h('input', { type: 'checkbox', attrs: { 'aria-label': 'Select all' } });
    all.checked = page.items.length > 0 && page.items.every((r) => selected.has(r.id));
    all.addEventListener('change', () => {
      for (const r of page.items) { if (all.checked) selected.add(r.id); else selected.delete(r.id); }
      render(page);
    });
    const head = h('tr', {},
      h('th', { class: 'narrow' }, all),
      cols.map((f) => {
        const dir = state.sort === f.name ? '▲' : state.sort === `-${f.name}` ? '▼' : '';
        return h('th', { class: 'sortable', dataset: { sort: f.name }, onclick: () => toggleSort(f.name) }, glyph(f.type), ' ', f.name, dir ? h('span', { class: 'dir', text: dir }) : null);
      }),
      h('th', { class: 'narrow' }, columns));
    const rows = page.items.map((r) => {
      const cb = h('input', { type: 'checkbox', checked: selected.has(r.id), attrs: { 'aria-label': `Select ${r.id}` } });
      cb.addEventListener('click', (e) => e.stopPropagation());
      cb.addEventListener('change', () => { if (cb.checked) selected.add(r.id); else selected.delete(r.id); renderBulk(); });
      return h('tr', { class: 'clickable', dataset: { id: r.id }, onclick: () => edit(r) },
        h('td', { class: 'narrow' }, cb),
        cols.map((f) => h('td', { class: 'cell', dataset: { col: f.name } }, cell(f, r[f.name], r, ctx.collectionsById))),
        h('td', { class: 'narrow muted' }, svg(icons.arrow)));
    });
    const empty = !page.items.length
      ? h('tr', {}, h('td', { class: 'empty', attrs: { colspan: cols.length + 2 } }, 'No records found.', state.filter ? h('div', {}, h('button', { class: 'small', text: 'Clear filter', onclick: () => { searchInput.value = ''; apply(); } })) : null))
      : null;
    mount(tableWrap, h('table', { class: 'data', attrs: { 'data-testid': 'records-table' } }, h('thead', {}, head), h('tbody', {}, rows, empty)));
    renderFooter(page);
    renderBulk();
  }

  function renderBulk() {
    if (!selected.size) { bulkBar.classList.add('hidden'); return; }
    const del = h('button', { class: 'danger small', text: `Delete selected (${selected.size})` });
    del.addEventListener('click', async () => {
      if (!(await confirmDialog(`Do you really want to delete ${selected.size} record(s)?`, { yes: 'Delete', danger: true }))) return;
      await busy(del, async () => {
        let failed = 0;
        for (const id of [...selected]) {
          try {
            await api('DELETE', `/api/collections/${encodeURIComponent(collection.name)}/records/${encodeURIComponent(id)}`);
            selected.delete(id);
          } catch (e) {
            failed++;
            toast(`${id}: ${e.message}`, 'error');
          }
        }
        if (!failed) toast('Records deleted.', 'success');
        load();
      });
    });
    mount(bulkBar, h('span', { class: 'muted', text: `${selected.size} selected` }), del,
      h('button', { class: 'small plain', text: 'Reset', onclick: () => { selected.clear(); render(lastPage); } }));
    bulkBar.classList.remove('hidden');
  }

  function renderFooter(page) {
    const perPage = h('select', { class: 'plain-input', attrs: { 'aria-label': 'Per page' } },
      PER_PAGE.map((n) => h('option', { value: n, text: `${n} per page`, selected: n === state.perPage })));
    perPage.addEventListener('change', () => { state.perPage = Number(perPage.value); state.page = 1; load(); });
    const prev = h('button', { class: 'small', text: '‹ Prev', disabled: page.page <= 1, attrs: { 'data-testid': 'prev-page' }, onclick: () => { state.page = page.page - 1; load(); } });
    const next = h('button', { class: 'small', text: 'Next ›', disabled: page.page >= page.totalPages, attrs: { 'data-testid': 'next-page' }, onclick: () => { state.page = page.page + 1; load(); } });
    mount(footer, h('span', { class: 'muted', attrs: { 'data-testid': 'total' } }, `Total: ${page.totalItems}`), h('span', { class: 'grow' }),
      prev, h('span', { class: 'small', attrs: { 'data-testid': 'page-of' } }, `Page ${page.page} of ${Math.max(page.totalPages, 1)}`), next, perPage);
  }

  function edit(r) {
    openRecord(collection, r, ctx, { onSaved: load, onDeleted: load });
  }

  async function load() {
    syncUrl();
    const filter = searchToFilter(collection, state.filter || '');
    try {
      const page = await api('GET', `/api/collections/${encodeURIComponent(collection.name)}/records`, {
        query: { page: state.page, perPage: state.perPage, sort: state.sort, filter, expand: relationNames.join(',') },
      });
      searchBar.classList.remove('invalid');
      searchError.classList.add('hidden');
      render(page);
    } catch (e) {
      if (e.status === 400) {
        searchBar.classList.add('invalid');
        mount(searchError, e.message);
        searchError.classList.remove('hidden');
      } else {
        toast(e.message, 'error');
      }
    }
  }

  load();
  return { reload: load, create: () => openRecord(collection, null, ctx, { onSaved: load }) };
}
