// The dashboard's entry: the route table, the top bar, and the session (superuser token kept
// in localStorage, refreshed before it expires; a 401 sends the user back to the login).

import { auth, refresh as refreshToken, setUnauthorizedHandler } from './api.js';
import { h, mount, svg, closeAllOverlays, toast } from './dom.js';
import { icons } from './icons.js';
import { route, current, setRenderer, navigate } from './router.js';
import {
  loginPage, installPage, confirmVerificationPage, confirmPasswordResetPage, confirmEmailChangePage,
} from './auth.js';
import { collectionsPage } from './collections.js';
import { clusterPage } from './cluster.js';
import { pluginsPage } from './plugins.js';
import { settingsPage } from './settings.js';

const NAV = [
  ['#/collections', 'Collections', icons.database],
  ['#/cluster', 'Cluster', icons.cluster],
  ['#/plugins', 'Plugins', icons.plugin],
  ['#/settings', 'Settings', icons.cog],
];

route('#/login', loginPage, { guest: true });
route('#/pbinstall/{token}', installPage, { open: true });
route('#/auth/confirm-verification/{token}', confirmVerificationPage, { open: true });
route('#/auth/confirm-password-reset/{token}', confirmPasswordResetPage, { open: true });
route('#/auth/confirm-email-change/{token}', confirmEmailChangePage, { open: true });
route('#/collections', collectionsPage);
route('#/cluster', clusterPage);
route('#/plugins', pluginsPage);
route('#/settings', settingsPage);
route('#/settings/{section}', settingsPage);

function logout() {
  auth.clear();
  navigate('#/login');
}

setUnauthorizedHandler(() => {
  if (!auth.token) return;
  auth.clear();
  toast('Your session has ended; please log in again.', 'error');
  navigate('#/login');
});

function topbar(path) {
  return h('header', { class: 'topbar' },
    h('a', { class: 'brand', href: '#/collections' }, h('img', { src: 'favicon.svg', alt: '' }), h('span', { text: 'Syncbase' })),
    h('nav', {}, NAV.map(([p, label, icon]) => h('a', { href: p, class: path.startsWith(p) ? 'active' : '', dataset: { nav: label.toLowerCase() } }, svg(icon), label))),
    h('span', { class: 'spacer' }),
    h('div', { class: 'user' },
      h('span', { class: 'email', text: auth.record?.email ?? '' }),
      h('button', { class: 'small', attrs: { 'aria-label': 'Log out', title: 'Log out', 'data-testid': 'logout' }, onclick: logout }, svg(icons.logout))));
}

// Each render gets a fresh root: a page still loading when the user navigates away must not
// draw over the next one.
let renderSeq = 0;
async function render() {
  const seq = ++renderSeq;
  closeAllOverlays();
  const app = document.getElementById('app');
  const info = current();
  if (!info.def) {
    navigate(auth.isValid() ? '#/collections' : '#/login');
    return;
  }
  if (info.def.guest && auth.isValid()) {
    navigate('#/collections');
    return;
  }
  if (!info.def.guest && !info.def.open && !auth.isValid()) {
    navigate('#/login');
    return;
  }
  const page = h('div');
  if (info.def.guest || info.def.open) {
    mount(app, page);
  } else {
    mount(app, h('div', { class: 'app' }, topbar(info.path), page));
  }
  page.dataset.route = info.def.pattern;
  try {
    await info.def.handler(page, info);
  } catch (e) {
    if (seq !== renderSeq) return;
    console.error(e);
    mount(page, h('div', { class: 'page' }, h('div', { class: 'alert danger', text: `This page failed: ${e.message}` })));
  }
}

// Renew the session while the dashboard is open (superuser tokens are refreshable).
async function keepSession() {
  if (!auth.isValid()) return;
  try {
    await refreshToken();
  } catch (e) {
    if (e.status === 401 || e.status === 403 || e.status === 404) {
      auth.clear();
      if (!current().def?.guest) navigate('#/login');
    }
  }
}

auth.load();
setRenderer(render);
render();
keepSession();
setInterval(() => { if (auth.isValid() && auth.expiresIn() < 30 * 60 * 1000) keepSession(); }, 60 * 1000);
