// Differential probe: sends the same raw HTTP requests to real PocketBase and to Syncbase and
// prints every response that differs (status or JSON body, after normalising ids and dates).
// Not a test (node --test does not pick it up); a tool for settling "what does PocketBase do".
//
//   node compare.mjs            # all steps
//   node compare.mjs --all      # also print the steps that match
//
// Env: SYNCBASE_BIN, POCKETBASE_BIN as for the tests.

import { startServer, SUPERUSER_EMAIL, SUPERUSER_PASSWORD } from './server.mjs';

const showAll = process.argv.includes('--all');

/** The request sequence; `{auth: true}` sends the superuser token. */
function steps() {
  const json = (method, path, body, extra = {}) => ({ method, path, body, auth: true, ...extra });
  const long = 'x'.repeat(3600);
  return [
    json('GET', '/api/health'),
    json('GET', '/api/nope'),
    json('GET', '/api/collections', undefined, { auth: false }),
    json('POST', '/api/collections', {
      name: 'things',
      listRule: '',
      viewRule: '',
      createRule: '',
      updateRule: '',
      deleteRule: '',
      fields: [
        { name: 'title', type: 'text', required: true, max: 20 },
        { name: 'n', type: 'number', min: 0, max: 1000 },
        { name: 'flag', type: 'bool' },
        { name: 'email', type: 'email' },
        { name: 'site', type: 'url' },
        { name: 'when', type: 'date' },
        { name: 'tags', type: 'select', maxSelect: 2, values: ['a', 'b', 'c'] },
        { name: 'one', type: 'select', maxSelect: 1, values: ['x', 'y'] },
        { name: 'meta', type: 'json' },
        { name: 'created', type: 'autodate', onCreate: true, onUpdate: false },
      ],
      indexes: ['CREATE UNIQUE INDEX idx_things_title ON things (title)'],
    }),
    json('POST', '/api/collections/things/records', { id: 'aaaaaaaaaaaaaa1', title: 't1', n: 5, tags: ['a'], one: 'x', meta: { k: [1, 2] }, when: '2024-01-02 03:04:05.000Z' }),
    json('POST', '/api/collections/things/records', { id: 'aaaaaaaaaaaaaa2', title: 't2', n: 7.5, flag: true, email: 'a@b.co', site: 'https://example.com' }),
    json('POST', '/api/collections/things/records', { id: 'aaaaaaaaaaaaaa3', title: 't1' }),
    json('POST', '/api/collections/things/records', { id: 'aaaaaaaaaaaaaa1', title: 't9' }),
    json('POST', '/api/collections/things/records', { title: 'this title is far too long for max 20' }),
    json('POST', '/api/collections/things/records', { title: 'bad n', n: 5000 }),
    json('POST', '/api/collections/things/records', { title: 'neg n', n: -1 }),
    json('POST', '/api/collections/things/records', { title: 'bad email', email: 'nope' }),
    json('POST', '/api/collections/things/records', { title: 'bad url', site: 'nope' }),
    json('POST', '/api/collections/things/records', { title: 'bad date', when: 'yesterday' }),
    json('POST', '/api/collections/things/records', { title: 'too many', tags: ['a', 'b', 'c'] }),
    json('POST', '/api/collections/things/records', { title: 'bad sel', one: 'z' }),
    json('POST', '/api/collections/things/records', { title: 'n as string', n: '12' }),
    json('POST', '/api/collections/things/records', { title: 'unknown key', nope: 1 }),
    json('POST', '/api/collections/things/records', { id: 'short', title: 'short id' }),
    { method: 'POST', path: '/api/collections/things/records', raw: '{"title": ', auth: true },
    json('GET', '/api/collections/things/records/aaaaaaaaaaaaaa1'),
    json('GET', '/api/collections/things/records/aaaaaaaaaaaaaa1?fields=id,title,meta'),
    json('GET', '/api/collections/things/records/nonexistent0000'),
    json('GET', '/api/collections/things/records?sort=title'),
    json('GET', '/api/collections/things/records?sort=-n,title&perPage=1&page=2'),
    json('GET', '/api/collections/things/records?perPage=0'),
    json('GET', '/api/collections/things/records?perPage=5000'),
    json('GET', '/api/collections/things/records?page=0'),
    json('GET', '/api/collections/things/records?page=-1'),
    json('GET', '/api/collections/things/records?skipTotal=1'),
    json('GET', `/api/collections/things/records?filter=${encodeURIComponent('n >')}`),
    json('GET', `/api/collections/things/records?filter=${encodeURIComponent('nope = 1')}`),
    json('GET', `/api/collections/things/records?filter=${encodeURIComponent(`title = '${long}'`)}`),
    json('GET', `/api/collections/things/records?sort=nope`),
    json('GET', `/api/collections/things/records?filter=${encodeURIComponent("tags:each ?= 'a'")}&sort=title`),
    json('GET', `/api/collections/things/records?filter=${encodeURIComponent("tags ?= 'a'")}&sort=title`),
    json('GET', `/api/collections/things/records?filter=${encodeURIComponent("meta.k ?= 2")}&sort=title`),
    json('GET', `/api/collections/things/records?filter=${encodeURIComponent("when > '2024-01-01' && when < @now")}`),
    json('GET', `/api/collections/things/records?filter=${encodeURIComponent("email = '' && site != ''")}`),
    json('GET', `/api/collections/things/records?filter=${encodeURIComponent("n > 6 || flag = true")}`),
    json('GET', `/api/collections/things/records?filter=${encodeURIComponent("@request.auth.id != ''")}`, undefined, { auth: false }),
    json('PATCH', '/api/collections/things/records/aaaaaaaaaaaaaa1', { 'n+': 10, 'tags+': 'b' }),
    json('PATCH', '/api/collections/things/records/aaaaaaaaaaaaaa1', { 'tags+': 'c' }),
    json('PATCH', '/api/collections/things/records/aaaaaaaaaaaaaa1', { title: 't2' }),
    json('PATCH', '/api/collections/things', { fields: [{ name: 'title', type: 'text' }, { name: 'title', type: 'number' }] }),
    json('GET', '/api/collections/things'),
    json('POST', '/api/collections', { name: 'dup', fields: [{ name: 'a', type: 'text' }, { name: 'a', type: 'text' }] }),
    json('POST', '/api/collections', { name: 'nosel', fields: [{ name: 'a', type: 'text' }, { name: 'b', type: 'select' }] }),
    json('POST', '/api/collections', { name: 'norel', fields: [{ name: 'r', type: 'relation', collectionId: 'missing' }] }),
    json('POST', '/api/collections', { name: 'bad name!' }),
    json('POST', '/api/collections', { name: 'two', fields: [{ name: 'a', type: 'text' }, { name: 'b', type: 'text' }] }),
    json('POST', '/api/collections/two/records', { id: 'bbbbbbbbbbbbbb1', a: 'A', b: 'B' }),
    json('PATCH', '/api/collections/two', { fields: [{ name: 'b', type: 'text' }, { name: 'b', type: 'text' }] }),
    json('GET', '/api/collections/two/records/bbbbbbbbbbbbbb1'),
    json('DELETE', '/api/collections/two'),
    json('DELETE', '/api/collections/things/records/aaaaaaaaaaaaaa2'),
    json('DELETE', '/api/collections/things/records/aaaaaaaaaaaaaa2'),
    ...relationSteps(json),
    json('GET', '/api/collections/nope/records'),
    json('POST', '/api/collections', { name: 'things' }),
    json('POST', '/api/collections', { name: '' }),
    json('DELETE', '/api/collections/things'),
  ];
}

/** Relations: validation, expand (nested, multiple, missing), fields with expand, cascade. */
function relationSteps(json) {
  const rec = (c, body) => json('POST', `/api/collections/${c}/records`, body);
  const get = (path) => json('GET', path);
  return [
    json('POST', '/api/collections', { name: 'people', listRule: '', viewRule: '', fields: [{ name: 'name', type: 'text' }] }),
    json('POST', '/api/collections', {
      name: 'books', listRule: '', viewRule: '',
      fields: [
        { name: 'title', type: 'text' },
        { name: 'author', type: 'relation', collectionId: '@coll:people', maxSelect: 1, cascadeDelete: true },
        { name: 'editors', type: 'relation', collectionId: '@coll:people', maxSelect: 5 },
      ],
    }),
    json('POST', '/api/collections', {
      name: 'reviews',
      fields: [
        { name: 'book', type: 'relation', collectionId: '@coll:books', maxSelect: 1, required: true },
        { name: 'stars', type: 'number', onlyInt: true },
      ],
    }),
    json('POST', '/api/collections', { name: 'byname', fields: [{ name: 'p', type: 'relation', collectionId: 'people' }] }),
    rec('people', { id: 'ppppppppppppp01', name: 'Ann' }),
    rec('people', { id: 'ppppppppppppp02', name: 'Bob' }),
    rec('books', { id: 'bbbbbbbbbbbbb01', title: 'B1', author: 'ppppppppppppp01', editors: ['ppppppppppppp02', 'ppppppppppppp01'] }),
    rec('books', { id: 'bbbbbbbbbbbbb02', title: 'B2', author: 'nosuchperson000' }),
    rec('books', { id: 'bbbbbbbbbbbbb03', title: 'B3', editors: 'ppppppppppppp02' }),
    rec('reviews', { id: 'rrrrrrrrrrrrr01', book: 'bbbbbbbbbbbbb01', stars: 4 }),
    rec('reviews', { id: 'rrrrrrrrrrrrr02', stars: 4.5, book: 'bbbbbbbbbbbbb01' }),
    rec('reviews', { id: 'rrrrrrrrrrrrr03' }),
    get('/api/collections/books/records/bbbbbbbbbbbbb01?expand=author,editors'),
    get('/api/collections/reviews/records/rrrrrrrrrrrrr01?expand=book.author'),
    get('/api/collections/reviews/records/rrrrrrrrrrrrr01?expand=book.author,book.editors'),
    get('/api/collections/books/records/bbbbbbbbbbbbb01?expand=nope'),
    get('/api/collections/books/records/bbbbbbbbbbbbb03?expand=author'),
    get('/api/collections/books/records?expand=author&fields=id,title,expand.author.name&sort=title'),
    get('/api/collections/books/records?sort=-author.name,title'),
    get(`/api/collections/books/records?filter=${encodeURIComponent("author.name = 'Ann'")}`),
    get(`/api/collections/books/records?filter=${encodeURIComponent("editors.name ?= 'Bob'")}&sort=title`),
    get(`/api/collections/books/records?filter=${encodeURIComponent("editors:length > 1")}`),
    get(`/api/collections/books/records?filter=${encodeURIComponent("editors:each ?= 'ppppppppppppp02'")}&sort=title`),
    get(`/api/collections/books/records?filter=${encodeURIComponent("author.name:isset = true")}`),
    get('/api/collections/books/records?sort=@random&fields=id&perPage=1&skipTotal=1&filter=id=%27bbbbbbbbbbbbb01%27'),
    json('PATCH', '/api/collections/books/records/bbbbbbbbbbbbb01', { 'editors-': 'ppppppppppppp02', '+editors': 'ppppppppppppp02' }),
    json('DELETE', '/api/collections/people/records/ppppppppppppp02'),
    json('DELETE', '/api/collections/people/records/ppppppppppppp01'),
    get('/api/collections/books/records?sort=title'),
    get('/api/collections/reviews/records'),
    json('DELETE', '/api/collections/people'),
  ];
}

/** Replaces server-specific values (generated ids, dates, tokens) with stable placeholders. */
function normaliser() {
  const ids = new Map();
  const norm = (v, key) => {
    if (Array.isArray(v)) return v.map((x) => norm(x));
    if (v && typeof v === 'object') {
      const out = {};
      for (const k of Object.keys(v).sort()) out[k] = norm(v[k], k);
      return out;
    }
    if (typeof v !== 'string') return v;
    if (/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(v) && key !== 'when') return '<date>';
    if (/^eyJ/.test(v)) return '<token>';
    const generatedId = key === 'id' && /^[a-z0-9_]+$/.test(v) && !/^a{14}\d$/.test(v);
    if (/^pbc_\d+$/.test(v) || generatedId || (key === 'collectionId' && v)) {
      if (!ids.has(v)) ids.set(v, `<id${ids.size}>`);
      return ids.get(v);
    }
    return v;
  };
  return norm;
}

/** Replaces "@coll:NAME" strings with that collection's id on this server. */
function bind(v, collections) {
  if (Array.isArray(v)) return v.map((x) => bind(x, collections));
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, bind(x, collections)]));
  }
  if (typeof v === 'string' && v.startsWith('@coll:')) return collections.get(v.slice(6)) ?? v;
  return v;
}

async function run(server, token) {
  const norm = normaliser();
  const collections = new Map();
  const out = [];
  for (const step of steps()) {
    const headers = { 'content-type': 'application/json' };
    if (step.auth) headers.authorization = token;
    const bound = bind(step.body, collections);
    const body = step.raw ?? (bound === undefined ? undefined : JSON.stringify(bound));
    const res = await fetch(server.url + step.path, { method: step.method, headers, body });
    const text = await res.text();
    let parsed;
    try {
      parsed = text ? JSON.parse(text) : '';
    } catch {
      parsed = `<non-JSON> ${text.slice(0, 200)}`;
    }
    if (step.method === 'POST' && step.path === '/api/collections' && parsed?.id) {
      collections.set(parsed.name, parsed.id);
    }
    // The superuser health check carries machine details; only the shape matters here.
    if (step.path === '/api/health' && parsed?.data) parsed.data = '<data>';
    out.push({ status: res.status, body: norm(parsed) });
  }
  return out;
}

/** Paths at which two JSON values differ, as "path: pocketbase=... syncbase=..." lines. */
function diff(a, b, path = '$') {
  const isObj = (v) => v !== null && typeof v === 'object';
  if (!isObj(a) || !isObj(b) || Array.isArray(a) !== Array.isArray(b)) {
    return JSON.stringify(a) === JSON.stringify(b)
      ? []
      : [`${path}: pocketbase=${JSON.stringify(a)} syncbase=${JSON.stringify(b)}`];
  }
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].flatMap((k) => diff(a[k], b[k], `${path}.${k}`));
}

async function superuserToken(url) {
  const res = await fetch(`${url}/api/collections/_superusers/auth-with-password`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ identity: SUPERUSER_EMAIL, password: SUPERUSER_PASSWORD }),
  });
  return (await res.json()).token;
}

const servers = [];
try {
  for (const kind of ['pocketbase', 'syncbase']) servers.push(await startServer(kind));
  const results = [];
  for (const server of servers) results.push(await run(server, await superuserToken(server.url)));
  const [pb, sb] = results;
  let differing = 0;
  steps().forEach((step, i) => {
    const same = JSON.stringify(pb[i]) === JSON.stringify(sb[i]);
    if (same && !showAll) return;
    if (!same) differing++;
    const label = `${step.method} ${decodeURIComponent(step.path).slice(0, 120)}`;
    console.log(`${same ? 'same' : 'DIFF'} #${i} ${label}`);
    if (step.body !== undefined || step.raw) {
      console.log(`  body: ${(step.raw ?? JSON.stringify(step.body)).slice(0, 200)}`);
    }
    if (same || pb[i].status !== sb[i].status || typeof pb[i].body !== 'object') {
      console.log(`  pocketbase ${pb[i].status} ${JSON.stringify(pb[i].body).slice(0, 600)}`);
      if (!same) console.log(`  syncbase   ${sb[i].status} ${JSON.stringify(sb[i].body).slice(0, 600)}`);
      return;
    }
    for (const d of diff(pb[i].body, sb[i].body)) console.log(`  ${d}`);
  });
  console.log(`\n${differing} of ${steps().length} responses differ`);
} finally {
  for (const s of servers) await s.stop();
}
