// DOM helpers: an element builder, panels and modals, toasts, confirmations, dropdowns.
// No framework: pages build elements and re-render the parts that change.

/**
 * Creates an element. `props`: `class`, `text`, `html` is not supported on purpose (all text
 * goes through textContent, so record values can never inject markup), `on*` listeners,
 * `attrs` (plain attributes), `dataset`, anything else is set as a property.
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'attrs') for (const [a, av] of Object.entries(v)) { if (av !== undefined && av !== null && av !== false) el.setAttribute(a, av === true ? '' : av); }
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
      else el[k] = v;
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function debounce(fn, ms) {
  let t;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

/** An inline SVG from markup held in this bundle (icons.js), never from user data. */
export function svg(markup) {
  const tpl = document.createElement('template');
  tpl.innerHTML = markup.trim();
  return tpl.content.firstElementChild;
}

// --- toasts ---------------------------------------------------------------------------

export function toast(message, kind = 'info', ms = 3500) {
  const box = document.getElementById('toasts');
  const el = h('div', { class: ['toast', kind], text: message, attrs: { 'data-toast': kind } });
  box.appendChild(el);
  setTimeout(() => el.remove(), kind === 'error' ? ms * 2 : ms);
}

// --- overlays -------------------------------------------------------------------------

const openOverlays = [];

document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && openOverlays.length) {
    openOverlays[openOverlays.length - 1].requestClose();
  }
});

/**
 * Opens a panel sliding in from the right (`kind: 'panel'`) or a centred modal
 * (`kind: 'modal'`). `beforeClose()` may return false to keep it open (unsaved changes).
 * Returns `{ el, body, footer, close, setTitle }`.
 */
export function overlay({ title, kind = 'panel', wide = false, beforeClose, onClose, testid } = {}) {
  const titleEl = h('h2', { class: 'ellipsis' });
  const closeBtn = h('button', { class: 'plain icon-only', attrs: { 'aria-label': 'Close', title: 'Close' }, text: '✕' });
  const header = h('div', { class: 'panel-header' }, titleEl, closeBtn);
  const body = h('div', { class: 'panel-body' });
  const footer = h('div', { class: 'panel-footer' });
  const box = h('div', { class: [kind, wide && 'wide'], attrs: { role: 'dialog', 'aria-modal': 'true', 'data-testid': testid } }, header, body, footer);
  const back = h('div', { class: ['overlay', kind === 'modal' && 'center'] }, box);
  const handle = {
    el: box,
    header,
    body,
    footer,
    setTitle(t) { mount(titleEl, t); },
    close() {
      back.remove();
      const i = openOverlays.indexOf(handle);
      if (i >= 0) openOverlays.splice(i, 1);
      if (onClose) onClose();
    },
    requestClose() {
      if (beforeClose && beforeClose() === false) return;
      handle.close();
    },
  };
  handle.setTitle(title ?? '');
  closeBtn.addEventListener('click', () => handle.requestClose());
  back.addEventListener('mousedown', (e) => {
    if (e.target === back) handle.requestClose();
  });
  document.getElementById('overlays').appendChild(back);
  openOverlays.push(handle);
  return handle;
}

/** Closes every open panel and modal (on navigation). */
export function closeAllOverlays() {
  for (const o of [...openOverlays]) o.close();
}

/** Asks a yes/no question in a modal; resolves true on confirm. */
export function confirmDialog(message, { yes = 'Yes', danger = false } = {}) {
  return new Promise((resolve) => {
    let answered = false;
    const m = overlay({
      title: 'Confirm',
      kind: 'modal',
      testid: 'confirm',
      onClose: () => { if (!answered) resolve(false); },
    });
    mount(m.body, h('p', { text: message }));
    const yesBtn = h('button', {
      class: ['primary', danger && 'danger solid'],
      text: yes,
      onclick: () => { answered = true; m.close(); resolve(true); },
    });
    mount(m.footer, h('button', { class: 'plain', text: 'Cancel', onclick: () => m.close() }), yesBtn);
    yesBtn.focus();
  });
}

/** A button that opens a menu of `items` ({label, onclick, danger} or a Node). */
export function dropdown(trigger, items, { left = false } = {}) {
  const menu = h('div', { class: ['dropdown-menu', 'hidden', left && 'left'] });
  const wrap = h('div', { class: 'dropdown' }, trigger, menu);
  const close = () => {
    menu.classList.add('hidden');
    document.removeEventListener('mousedown', outside);
  };
  const outside = (e) => { if (!wrap.contains(e.target)) close(); };
  trigger.addEventListener('click', (e) => {
    e.preventDefault();
    const opening = menu.classList.contains('hidden');
    if (!opening) return close();
    const list = typeof items === 'function' ? items() : items;
    mount(menu, list.map((it) => it instanceof Node ? it : h('button', {
      class: ['menu-item', it.danger && 'danger'],
      text: it.label,
      attrs: { type: 'button' },
      onclick: () => { close(); it.onclick(); },
    })));
    menu.classList.remove('hidden');
    document.addEventListener('mousedown', outside);
  });
  return wrap;
}

/** Copies text to the clipboard (falls back to a hidden textarea on plain-http pages). */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const ta = h('textarea', { value: text });
    document.body.appendChild(ta);
    ta.select();
    document.execCommand('copy');
    ta.remove();
  }
  toast('Copied to clipboard.');
}

/** A read-only block of code with a copy button. */
export function codeBlock(text, testid) {
  return h('div', { class: 'codeblock', attrs: { 'data-testid': testid } },
    h('pre', { class: 'mono', text }),
    h('button', { class: 'small', text: 'Copy', onclick: () => copyText(text) }));
}

/** Marks a button busy while `fn` runs. */
export async function busy(btn, fn) {
  if (btn.classList.contains('busy')) return;
  btn.classList.add('busy');
  btn.disabled = true;
  try {
    return await fn();
  } finally {
    btn.classList.remove('busy');
    btn.disabled = false;
  }
}

export function formatBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

/** Downloads `text` as a file, built in the page (a blob: URL: nothing leaves the node). */
export function download(name, text, type = 'application/json') {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: name });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
