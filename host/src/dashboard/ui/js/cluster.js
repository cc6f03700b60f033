// The Cluster page: this node, the log, every node's position in it, backlog and dead letters,
// refreshed every two seconds; and "Add a node": the command that starts another node that
// joins this cluster, with this node's addresses filled in.

import { api } from './api.js';
import { h, mount, overlay, formatBytes, codeBlock, toast } from './dom.js';

const POLL_MS = 2000;

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.flatMap(([k, v, testid]) => [h('dt', { text: k }), h('dd', { attrs: { 'data-testid': testid } }, v ?? '—')]));
}

function duration(secs) {
  if (secs == null) return '—';
  const d = Math.floor(secs / 86400);
  const hh = Math.floor((secs % 86400) / 3600);
  const m = Math.floor((secs % 3600) / 60);
  return d ? `${d}d ${hh}h` : hh ? `${hh}h ${m}m` : `${m}m ${secs % 60}s`;
}

/** `0.0.0.0:6222` → this page's host, so the command works from another machine. */
function reachable(addr) {
  if (!addr) return addr;
  const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), addr.slice(addr.lastIndexOf(':') + 1)];
  if (host === '0.0.0.0' || host === '[::]' || host === '::') return `${window.location.hostname}:${port}`;
  return addr;
}

function bump(addr, by) {
  const i = addr.lastIndexOf(':');
  return `${addr.slice(0, i)}:${Number(addr.slice(i + 1)) + by}`;
}

function nextNodeId(status) {
  const known = new Set([status.nodeId, ...(status.peersSeen || []), ...((status.nodes || []).map((n) => n.nodeId))]);
  for (let i = 2; ; i++) if (!known.has(`n${i}`)) return `n${i}`;
}

/** The "Add a node" section: a small form whose values fill the command. */
function addNode(status) {
  const join = status.join || {};
  const count = Math.max((status.nodes || []).length, 1);
  const vals = {
    id: nextNodeId(status),
    http: `127.0.0.1:${8090 + count}`,
    natsListen: join.natsListen ? bump(join.natsListen, count) : `127.0.0.1:${4222 + count}`,
    clusterListen: join.clusterListen ? bump(join.clusterListen, count) : `127.0.0.1:${6222 + count}`,
  };
  const out = h('div');
  const q = (s) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`);
  const render = () => {
    const nodeFlags = `--dir ./sb_data_${vals.id} --http ${vals.http} --node-id ${q(vals.id)}`;
    if (status.mode === 'single') {
      mount(out,
        h('div', { class: 'alert warn' }, 'This node runs alone, without replication. Restart it with replication on (its data stays), then start the new node:'),
        h('p', { class: 'small muted', text: '1. Restart this node with an embedded NATS server that peers can join:' }),
        codeBlock(`syncbase serve --dir ./sb_data --http ${window.location.host} --sync --node-id ${q(status.nodeId || 'n1')} --nats-listen 127.0.0.1:4222 --cluster-listen 127.0.0.1:6222`, 'restart-command'),
        h('p', { class: 'small muted', text: '2. Start the new node, joining it:' }),
        codeBlock(`syncbase serve ${nodeFlags} --sync --nats-listen ${vals.natsListen} --cluster-listen ${vals.clusterListen} --join 127.0.0.1:6222`, 'join-command'));
      return;
    }
    if (join.mode === 'external') {
      const extra = [
        join.credsFile ? '--nats-creds ./node.creds' : '',
        join.user ? '--nats-user USER --nats-password PASSWORD' : '',
        join.tls ? '--nats-tls-ca ./ca.pem' : '',
      ].filter(Boolean).join(' ');
      mount(out,
        h('p', { class: 'small muted', text: 'This node uses an external NATS cluster; the new node connects to the same servers and cluster name:' }),
        codeBlock(`syncbase serve ${nodeFlags} --nats ${(join.natsUrls || []).join(',')} --cluster ${q(join.cluster)}${extra ? ' ' + extra : ''}`, 'join-command'),
        extra ? h('p', { class: 'small muted', text: 'Give it the same kind of NATS credentials this node uses (the dashboard never shows them).' }) : null);
      return;
    }
    if (!join.clusterListen) {
      mount(out,
        h('div', { class: 'alert warn' }, 'This node\'s embedded NATS server runs without a route address (--cluster-listen), so no node can join it yet. Restart it with one:'),
        codeBlock(`syncbase serve --dir ./sb_data --http ${window.location.host} --sync --node-id ${q(status.nodeId)} --nats-listen ${join.natsListen} --cluster-listen 127.0.0.1:6222 --cluster ${q(join.cluster)}`, 'restart-command'));
      return;
    }
    const peers = [reachable(join.clusterListen), ...(join.routes || [])].filter((v, i, a) => v && a.indexOf(v) === i);
    mount(out,
      h('p', { class: 'small muted' }, 'Run this on the new node\'s machine (', h('code', { text: 'nats-server' }), ' ≥ 2.10 on its PATH). It starts its own NATS server, joins this one\'s routes, and catches up from the log:'),
      codeBlock(`syncbase serve ${nodeFlags} --sync --cluster ${q(join.cluster)} --nats-listen ${vals.natsListen} --cluster-listen ${vals.clusterListen} --join ${peers.join(',')}`, 'join-command'),
      h('p', { class: 'small muted', text: 'On another machine, use addresses that machine can reach (not 127.0.0.1), and let this node\'s route port through the firewall. The new node appears in the table above once it has joined.' }));
  };
  const input = (key, label) => {
    const el = h('input', { value: vals[key], attrs: { 'data-testid': `add-${key}` } });
    el.addEventListener('input', () => { vals[key] = el.value.trim(); render(); });
    return h('div', { class: 'field' }, h('label', { text: label }), el);
  };
  render();
  const showRoutes = status.mode !== 'single' && join.mode !== 'external';
  return h('div', { class: 'card stack', attrs: { 'data-testid': 'add-node' } },
    h('h3', { text: 'Add a node' }),
    h('div', { class: 'grid' }, input('id', 'New node id'), input('http', 'Its HTTP address'),
      showRoutes ? input('natsListen', 'Its NATS client address') : null, showRoutes ? input('clusterListen', 'Its route address') : null),
    out);
}

async function showDeadLetter(seq) {
  const m = overlay({ title: `Dead letter #${seq}`, kind: 'modal', wide: true, testid: 'dead-letter' });
  mount(m.footer, h('button', { class: 'plain', text: 'Close', onclick: () => m.close() }));
  try {
    const d = await api('GET', `/api/sync/dead-letters/${seq}`);
    mount(m.body, h('div', { class: 'stack' },
      kv([['Stream seq', String(d.seq)], ['Event', d.eventId], ['Kind', d.kind], ['Origin', d.origin], ['Collection', d.collection], ['Record', d.recordId || '—']]),
      h('div', { class: 'alert danger' }, h('strong', { text: 'Reason: ' }), d.reason),
      h('h3', { text: 'Event' }),
      codeBlock(JSON.stringify(d.event, null, 2), 'dead-letter-event')));
  } catch (e) {
    mount(m.body, h('div', { class: 'alert danger', text: e.message }));
  }
}

function nodesTable(status) {
  const rows = new Map();
  for (const n of status.nodes || []) rows.set(n.nodeId, n);
  for (const p of status.peersSeen || []) if (!rows.has(p)) rows.set(p, { nodeId: p });
  if (!rows.has(status.nodeId)) rows.set(status.nodeId, { nodeId: status.nodeId, appliedSeq: status.appliedSeq, lag: status.lag });
  const list = [...rows.values()].sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  return h('table', { class: 'data', attrs: { 'data-testid': 'nodes-table' } },
    h('thead', {}, h('tr', {}, ['Node', 'Applied seq', 'Lag', 'Undelivered', 'State'].map((t) => h('th', { text: t })))),
    h('tbody', {}, list.map((n) => {
      const self = n.nodeId === status.nodeId;
      const state = n.connected === undefined ? h('span', { class: 'badge', text: 'seen in the log' })
        : n.connected ? h('span', { class: 'badge success', text: 'following' }) : h('span', { class: 'badge warn', text: n.lag ? 'behind / offline' : 'idle' });
      return h('tr', { dataset: { node: n.nodeId } },
        h('td', {}, h('strong', { text: n.nodeId }), self ? h('span', { class: 'badge info', text: 'this node' }) : null),
        h('td', { text: n.appliedSeq ?? '—' }),
        h('td', { class: n.lag ? 'txt-danger' : '', text: n.lag ?? '—' }),
        h('td', { text: n.pending ?? '—' }),
        h('td', {}, state));
    })));
}

function deadLetters(status) {
  const list = status.recentDeadLetters || [];
  return h('div', { class: 'card', attrs: { 'data-testid': 'dead-letters' } },
    h('h3', { text: `Dead letters (${status.deadLetters ?? 0})` }),
    list.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
      h('thead', {}, h('tr', {}, ['Seq', 'Kind', 'Collection', 'Record', 'Origin', 'Reason'].map((t) => h('th', { text: t })))),
      h('tbody', {}, list.map((d) => h('tr', { class: 'clickable', dataset: { seq: d.seq }, onclick: () => showDeadLetter(d.seq) },
        h('td', { text: d.seq }), h('td', { text: d.kind }), h('td', { text: d.collection }), h('td', { class: 'mono', text: d.recordId }),
        h('td', { text: d.origin }), h('td', { class: 'cell', text: d.reason }))))))
      : h('p', { class: 'muted', text: 'None: every event in the log was applied.' }));
}

function bindings(status) {
  const list = status.plugins || [];
  if (!list.length) return null;
  return h('div', { class: 'card' }, h('h3', { text: 'Plugin bindings (switched at their log position on every node)' }),
    h('ul', {}, list.map((b) => h('li', { class: 'small' }, `${b.role}${b.collection ? ` of ${b.collectionName || b.collection}` : ''} → `, b.active ? `${b.active.plugin} v${b.active.version}` : 'unbound'))));
}

function snapshots(status) {
  const list = status.snapshots?.kept;
  if (!Array.isArray(list) || !list.length) return null;
  return h('div', { class: 'card', attrs: { 'data-testid': 'snapshots' } }, h('h3', { text: `Snapshots (${list.length})` }),
    h('table', { class: 'data' },
      h('thead', {}, h('tr', {}, ['Stream seq', 'Kind', 'Size', 'Taken by', 'When'].map((t) => h('th', { text: t })))),
      h('tbody', {}, list.map((s) => h('tr', {}, h('td', { text: s.seq }), h('td', { text: s.kind }), h('td', { text: formatBytes(s.size) }), h('td', { text: s.node }), h('td', { text: s.created }))))));
}

function render(root, status, addNodeCard) {
  if (status.mode === 'single') {
    mount(root,
      h('div', { class: 'cards' }, h('div', { class: 'card' }, h('h3', { text: 'This node' }),
        kv([['Node id', status.nodeId, 'node-id'], ['Mode', 'single (no replication)', 'node-mode']]))),
      addNodeCard);
    return;
  }
  const s = status.stream || {};
  mount(root,
    status.nats?.connected ? null : h('div', { class: 'alert warn' }, 'Not connected to NATS: writes are kept in the outbox and published when it returns. ', status.nats?.lastError || ''),
    h('div', { class: 'cards' },
      h('div', { class: 'card' }, h('h3', { text: 'This node' }), kv([
        ['Node id', status.nodeId, 'node-id'], ['Mode', status.mode, 'node-mode'], ['Cluster', status.cluster],
        ['NATS', status.nats?.connected ? h('span', { class: 'badge success', text: 'connected' }) : h('span', { class: 'badge danger', text: 'disconnected' })],
        ['Uptime', duration(status.uptimeSeconds)]])),
      h('div', { class: 'card' }, h('h3', { text: 'Log (JetStream stream)' }), kv([
        ['Stream', s.name], ['First seq', s.firstSeq, 'stream-first'], ['Last seq', s.lastSeq ?? status.streamSeq, 'stream-last'],
        ['Messages', s.messages], ['Size', s.bytes != null ? formatBytes(s.bytes) : '—', 'stream-bytes'], ['Replicas', s.replicas]])),
      h('div', { class: 'card' }, h('h3', { text: 'Here' }), kv([
        ['Applied seq', status.appliedSeq, 'applied-seq'], ['Lag', status.lag, 'lag'], ['Outbox backlog', status.outboxBacklog, 'outbox'],
        ['Unconfirmed writes', status.pendingOverlay], ['Dead letters', status.deadLetters, 'dead-count'],
        ['Published / applied', `${status.published} / ${status.applied}`]]))),
    h('div', { class: 'card stack' }, h('h3', { text: 'Nodes' }), h('div', { class: 'table-wrap' }, nodesTable(status)),
      h('p', { class: 'small muted', text: 'Positions come from each node\'s durable consumer on the stream: a node acknowledges after it applied.' })),
    deadLetters(status),
    snapshots(status),
    bindings(status),
    addNodeCard);
}

export async function clusterPage(root) {
  const body = h('div', { class: 'stack' });
  const updated = h('span', { class: 'small muted', attrs: { 'data-testid': 'updated' } });
  mount(root, h('main', { class: 'page' },
    h('div', { class: 'page-header' }, h('div', { class: 'breadcrumbs' }, h('strong', { text: 'Cluster' })), h('span', { class: 'grow' }), updated),
    body));
  let addNodeCard = null;
  let addNodeKey = '';
  let failures = 0;
  const tick = async () => {
    if (!root.isConnected) return false;
    try {
      const status = await api('GET', '/api/sync/status');
      // The "Add a node" form keeps what the user typed across refreshes.
      const key = JSON.stringify([status.mode, status.join]);
      if (key !== addNodeKey) { addNodeKey = key; addNodeCard = addNode(status); }
      if (!root.isConnected) return false;
      render(body, status, addNodeCard);
      mount(updated, `Live · updated ${new Date().toLocaleTimeString()}`);
      failures = 0;
    } catch (e) {
      failures++;
      if (failures === 1) toast(e.message, 'error');
      mount(updated, `Not updating: ${e.message}`);
    }
    return true;
  };
  await tick();
  const loop = async () => {
    if (await tick()) setTimeout(loop, POLL_MS);
  };
  setTimeout(loop, POLL_MS);
}
