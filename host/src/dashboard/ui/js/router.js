// Hash routing, as PocketBase's dashboard does it (`#/collections?collection=posts`), so the
// server serves one page and links can be bookmarked.

const routes = [];

/** Registers `pattern` (e.g. `#/pbinstall/{token}`) → `handler(route)`. */
export function route(pattern, handler, { guest = false, open = false } = {}) {
  const names = [];
  const rx = new RegExp('^' + pattern.replace(/[.*+?^$()|[\]\\]/g, '\\$&')
    .replace(/\{(\w+)\}/g, (_, n) => { names.push(n); return '([^/?]+)'; }) + '$');
  routes.push({ pattern, rx, names, handler, guest, open });
}

/** The current route: `{ path, params, query, def }`, or null when nothing matches. */
export function current() {
  const hash = window.location.hash || '#/';
  const [path, qs = ''] = hash.split('?');
  const query = Object.fromEntries(new URLSearchParams(qs));
  for (const def of routes) {
    const m = def.rx.exec(path);
    if (m) {
      const params = {};
      def.names.forEach((n, i) => { params[n] = decodeURIComponent(m[i + 1]); });
      return { path, params, query, def };
    }
  }
  return { path, params: {}, query, def: null };
}

/** Builds `#/path?k=v` from a path and a query object (empty values dropped). */
export function href(path, query = {}) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== '') qs.set(k, v);
  }
  const s = qs.toString();
  return s ? `${path}?${s}` : path;
}

export function go(path, query) {
  window.location.hash = href(path, query);
}

/** Changes the query of the current page without adding a history entry or re-rendering. */
export function replaceQuery(query) {
  const { path } = current();
  history.replaceState(null, '', href(path, query));
}

let renderer = () => {};
/** The app's render function, called on every hash change and by `refresh()`. */
export function setRenderer(fn) {
  renderer = fn;
  window.addEventListener('hashchange', () => renderer());
}

/** Re-renders the current page (e.g. after a schema change). */
export function refresh() {
  renderer();
}

/** Goes to `path?query`, re-rendering even when that is where the page already is. */
export function navigate(path, query) {
  const target = href(path, query);
  if (window.location.hash === target) refresh();
  else window.location.hash = target;
}
