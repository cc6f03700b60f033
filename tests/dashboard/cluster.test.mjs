// The Cluster page on a 2-node cluster (embedded NATS): the first node's "Add a node" command
// is run exactly as shown (only the data dir and ports filled in through the form), the new
// node appears on the first node's page, and its own dashboard shows both nodes too.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  EMAIL, PASSWORD, freePort, installLink, launchBrowser, shellWords, startNode,
} from './harness.mjs';

async function firstRun(page, node) {
  await page.goto(installLink(node));
  await page.fill('#email', EMAIL);
  await page.fill('#password', PASSWORD);
  await page.fill('#passwordConfirm', PASSWORD);
  await page.click('button[type=submit]');
  await page.waitForSelector('[data-testid=current-collection]');
}

describe('cluster page on two nodes', () => {
  let n1;
  let n2;
  let b;
  let n2dir;

  before(async () => {
    const [nats, route] = [await freePort(), await freePort()];
    n1 = await startNode({ flags: ['--sync', '--node-id', 'n1', '--nats-listen', `127.0.0.1:${nats}`, '--cluster-listen', `127.0.0.1:${route}`] });
    b = await launchBrowser([n1.url]);
    b.page.setDefaultTimeout(20_000);
    n2dir = await mkdtemp(path.join(os.tmpdir(), 'sb-dash-n2-'));
  });

  after(async () => {
    await b?.close();
    await n2?.stop();
    await n1?.stop();
    if (n2dir) await rm(n2dir, { recursive: true, force: true });
  });

  it('shows this node and a join command, and the node started from it joins', async () => {
    const page = b.page;
    await firstRun(page, n1);
    await page.click('[data-nav=cluster]');
    await page.waitForSelector('[data-testid=node-mode]:has-text("embedded")');
    await page.waitForSelector('[data-testid=nodes-table] tr[data-node=n1]');

    const [http, nats, route] = [await freePort(), await freePort(), await freePort()];
    await page.fill('[data-testid=add-http]', `127.0.0.1:${http}`);
    await page.fill('[data-testid=add-natsListen]', `127.0.0.1:${nats}`);
    await page.fill('[data-testid=add-clusterListen]', `127.0.0.1:${route}`);
    const command = await page.locator('[data-testid=join-command] pre').innerText();
    const words = shellWords(command);
    assert.equal(words[0], 'syncbase');
    assert.ok(words.includes('--join'), command);
    // Run it as printed; only the data directory moves to a temp dir.
    const args = words.slice(1);
    args[args.indexOf('--dir') + 1] = n2dir;
    n2 = await startNode({ args, dir: n2dir });
    assert.equal(n2.url, `http://127.0.0.1:${http}`);

    await page.waitForSelector('[data-testid=nodes-table] tr[data-node=n2]');
    await page.waitForFunction(() => {
      const lag = document.querySelector('[data-testid=nodes-table] tr[data-node=n2] td:nth-child(3)');
      return lag && lag.textContent === '0';
    });
    assert.match(await page.locator('[data-testid=stream-last]').innerText(), /^\d+$/);
    await b.shot('20-cluster-two-nodes');
  });

  it('is served by the new node too, which shows both nodes', async () => {
    b.allow(n2.url);
    const page = await b.context.newPage();
    page.setDefaultTimeout(20_000);
    await firstRun(page, n2);
    await page.click('[data-nav=cluster]');
    await page.waitForSelector('[data-testid=node-id]:has-text("n2")');
    await page.waitForSelector('[data-testid=nodes-table] tr[data-node=n1]');
    await page.waitForSelector('[data-testid=nodes-table] tr[data-node=n2]');
    await b.shot('21-cluster-second-node', page);
    await page.close();
  });

  it('made no request outside the nodes and no script error', () => {
    assert.deepEqual(b.outside(), []);
    assert.deepEqual(b.problems, []);
  });
});
