// The dashboard on one node, as a new user meets it: the first-run link, login, a collection
// with several field types, rules checked while typed, records added, edited, deleted, filtered,
// sorted and paged, a validation error on its field, settings, export/import, a shipped plugin
// bound and tried, the phone layout and the dark theme. Every page's requests stay on the node.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  EMAIL, PASSWORD, apiCall, apiToken, installLink, launchBrowser, shippedPlugin, startNode, waitFor,
} from './harness.mjs';

describe('dashboard on a single node', () => {
  let node;
  let b;
  let page;
  let token;
  let installToken;

  before(async () => {
    node = await startNode();
    b = await launchBrowser([node.url]);
    page = b.page;
    page.setDefaultTimeout(15_000);
  });

  after(async () => {
    await b?.close();
    await node?.stop();
  });

  const text = (sel) => page.locator(sel).innerText();
  const rowsViews = async () => (await page.locator('[data-testid=records-table] tbody td[data-col=views]').allInnerTexts()).map(Number);

  it('prints a first-run link, and /_/ asks for it or a login', async () => {
    const link = installLink(node);
    assert.match(link, new RegExp(`^${node.url}/_/#/pbinstall/`));
    installToken = link.split('/pbinstall/')[1];
    await page.goto(`${node.url}/_/`);
    await page.waitForSelector('form button[type=submit]:has-text("Login")');
    assert.match(page.url(), /#\/login$/);
    await b.shot('00-login');
  });

  it('creates the first superuser through the first-run form and signs in', async () => {
    await page.goto(installLink(node));
    await page.waitForSelector('text=Set up your Syncbase node');
    await page.fill('#email', EMAIL);
    await page.fill('#password', PASSWORD);
    await page.fill('#passwordConfirm', 'something-else');
    await page.click('button[type=submit]');
    // The server's answer lands on the field it names.
    await page.waitForSelector('[data-error-for=passwordConfirm]');
    await b.shot('01-first-run');
    await page.fill('#passwordConfirm', PASSWORD);
    await page.click('button[type=submit]');
    await page.waitForSelector('[data-testid=current-collection]');
    assert.equal(await text('.topbar .email'), EMAIL);
    token = await apiToken(node.url);
    // The link died with the placeholder superuser it spoke for.
    const res = await fetch(`${node.url}/api/collections`, { headers: { Authorization: installToken } });
    assert.equal(res.status, 401);
    assert.doesNotMatch(JSON.stringify(await apiCall(node.url, token, 'GET', '/api/collections/_superusers/records')), /__pbinstaller/);
  });

  it('logs out, refuses a wrong password, and logs in', async () => {
    await page.click('[data-testid=logout]');
    await page.waitForSelector('#email');
    await page.fill('#email', EMAIL);
    await page.fill('#password', 'wrong-password');
    await page.click('button[type=submit]');
    await page.waitForSelector('[data-testid=login-error]:not(.hidden)');
    await page.fill('#password', PASSWORD);
    await page.click('button[type=submit]');
    await page.waitForSelector('[data-testid=current-collection]');
  });

  it('creates a collection with several field types, an index and rules checked by the server', async () => {
    await page.click('[data-testid=new-collection]');
    await page.fill('[data-testid=collection-name]', 'posts');
    const addField = async (type, name) => {
      await page.click('[data-testid=new-field]');
      await page.click(`[data-testid=field-types] button[data-type=${type}]`);
      const focused = page.locator('.field-row', { has: page.locator('input.name:focus') });
      const idx = await focused.getAttribute('data-field-index');
      await focused.locator('input.name').fill(name);
      return page.locator(`.field-row[data-field-index="${idx}"]`);
    };
    const title = await addField('text', 'title');
    await title.locator('[data-opt=required] input').check();
    await addField('number', 'views');
    await addField('bool', 'published');
    const status = await addField('select', 'status');
    await status.locator('[data-opt=values] input').fill('draft, published');
    const tags = await addField('select', 'tags');
    await tags.locator('[data-opt=values] input').fill('news, tech, life');
    await tags.locator('[data-opt=maxSelect] input').fill('3');
    await addField('json', 'meta');
    await addField('date', 'due');
    const author = await addField('relation', 'author');
    await author.locator('[data-opt=collectionId] select').selectOption({ label: 'users' });
    await page.click('[data-testid=new-index]');
    await page.locator('[data-testid=index-modal] label.check', { hasText: 'title' }).locator('input').check();
    await page.click('[data-testid=index-modal] button:has-text("Set index")');
    await b.shot('02-collection-fields');

    await page.click('[data-tab=rules]');
    await page.click('[data-testid=lock-listRule]');
    await page.click('[data-testid=lock-viewRule]');
    await page.click('[data-testid=lock-createRule]');
    await page.fill('[data-testid=rule-createRule]', "@request.auth.id != '' &&");
    // The node checks the rule while it is typed and the error shows under it.
    await page.waitForSelector('[data-error-for=createRule]');
    assert.match(await text('[data-error-for=createRule]'), /Invalid rule/);
    await b.shot('03-collection-rules-error');
    await page.fill('[data-testid=rule-createRule]', "@request.auth.id != '' && nope = 1");
    await page.waitForSelector('[data-error-for=createRule]:has-text("nope")');
    await page.fill('[data-testid=rule-createRule]', "@request.auth.id != ''");
    await page.waitForSelector('[data-error-for=createRule]', { state: 'detached' });
    await page.click('[data-testid=collection-save]');
    await page.waitForSelector('[data-testid=current-collection]:has-text("posts")');

    const c = await apiCall(node.url, token, 'GET', '/api/collections/posts');
    const byName = Object.fromEntries(c.fields.map((f) => [f.name, f]));
    assert.equal(byName.title.required, true);
    assert.deepEqual(byName.status.values, ['draft', 'published']);
    assert.equal(byName.tags.maxSelect, 3);
    assert.equal(byName.author.type, 'relation');
    for (const t of ['number', 'bool', 'json', 'date']) assert.ok(c.fields.some((f) => f.type === t), t);
    assert.equal(c.listRule, '');
    assert.equal(c.viewRule, '');
    assert.equal(c.createRule, "@request.auth.id != ''");
    assert.equal(c.updateRule, null);
    assert.equal(c.indexes.length, 1);
    assert.match(c.indexes[0], /`title`/);
  });

  it('shows a validation error on its field, then creates a record with every input', async () => {
    const user = await apiCall(node.url, token, 'POST', '/api/collections/users/records', {
      email: 'ann@example.com', password: 'ann-password-1', passwordConfirm: 'ann-password-1', name: 'Ann',
    });
    await page.click('[data-testid=new-record]');
    await page.fill('#f-views', '7');
    await page.click('[data-testid=record-save]');
    await page.waitForSelector('[data-error-for=title]');
    assert.match(await text('[data-error-for=title]'), /blank/i);
    await b.shot('04-record-validation-error');

    await page.fill('#f-title', 'Hello');
    await page.check('#f-published');
    await page.selectOption('#f-status', 'published');
    await page.locator('#f-tags label', { hasText: 'news' }).locator('input').check();
    await page.locator('#f-tags label', { hasText: 'tech' }).locator('input').check();
    await page.fill('#f-meta', '{"pinned": true}');
    await page.fill('#f-due', '2025-01-02T03:04:05.000');
    await page.click('.field[data-field=author] button:has-text("Pick")');
    await page.click(`[data-testid=relation-picker] label[data-id="${user.id}"]`);
    await page.click('[data-testid=relation-picker] button:has-text("Set selection")');
    await b.shot('05-record-editor');
    await page.click('[data-testid=record-save]');
    await page.waitForSelector('[data-testid=records-table] td[data-col=title]:has-text("Hello")');

    const list = await apiCall(node.url, token, 'GET', '/api/collections/posts/records');
    assert.equal(list.totalItems, 1);
    const r = list.items[0];
    assert.equal(r.views, 7);
    assert.equal(r.published, true);
    assert.equal(r.status, 'published');
    assert.deepEqual(r.tags, ['news', 'tech']);
    assert.deepEqual(r.meta, { pinned: true });
    assert.equal(r.due, '2025-01-02 03:04:05.000Z');
    assert.equal(r.author, user.id);
  });

  it('edits and deletes records from the record panel', async () => {
    await page.click('[data-testid=records-table] td[data-col=title]:has-text("Hello")');
    await page.fill('#f-views', '8');
    await page.click('[data-testid=record-save]');
    await page.waitForSelector('[data-testid=records-table] td[data-col=views]:has-text("8")');

    await apiCall(node.url, token, 'POST', '/api/collections/posts/records', { title: 'Doomed', views: 0 });
    await page.click('button[aria-label=Refresh]');
    await page.click('[data-testid=records-table] td[data-col=title]:has-text("Doomed")');
    await page.click('[data-testid=record-panel] button[aria-label="Record actions"]');
    await page.click('[data-testid=record-panel] .menu-item:has-text("Delete")');
    await page.click('[data-testid=confirm] button:has-text("Delete")');
    await page.waitForSelector('[data-testid=records-table] td[data-col=title]:has-text("Doomed")', { state: 'detached' });
    const list = await apiCall(node.url, token, 'GET', '/api/collections/posts/records');
    assert.deepEqual(list.items.map((x) => x.title), ['Hello']);
  });

  it('filters, searches, sorts by column, pages, and remembers the chosen columns', async () => {
    for (let i = 1; i <= 24; i++) {
      await apiCall(node.url, token, 'POST', '/api/collections/posts/records', { title: `post ${i}`, views: 100 + i });
    }
    await page.click('button[aria-label=Refresh]');
    await page.fill('[data-testid=search]', 'views > 120');
    await page.press('[data-testid=search]', 'Enter');
    await waitFor(async () => (await rowsViews()).length === 4, 'four rows with views > 120');
    assert.deepEqual((await rowsViews()).sort(), [121, 122, 123, 124]);
    await b.shot('06-records-filtered');

    // Plain text searches the text fields; a broken filter is reported, not swallowed.
    await page.fill('[data-testid=search]', 'post 2');
    await page.press('[data-testid=search]', 'Enter');
    await waitFor(async () => (await rowsViews()).length === 6, 'post 2, post 20..24');
    await page.fill('[data-testid=search]', 'views >');
    await page.press('[data-testid=search]', 'Enter');
    await page.waitForSelector('[data-testid=search-error]:not(.hidden)');
    await page.fill('[data-testid=search]', '');
    await page.press('[data-testid=search]', 'Enter');
    await page.waitForSelector('[data-testid=search-error].hidden', { state: 'attached' });

    await page.click('th[data-sort=views]');
    await waitFor(async () => (await rowsViews())[0] === 8, 'ascending by views');
    await page.click('th[data-sort=views]');
    await waitFor(async () => (await rowsViews())[0] === 124, 'descending by views');

    await page.selectOption('select[aria-label="Per page"]', '10');
    await waitFor(async () => (await text('[data-testid=page-of]')) === 'Page 1 of 3', 'three pages');
    assert.equal((await rowsViews()).length, 10);
    await page.click('[data-testid=next-page]');
    await waitFor(async () => (await text('[data-testid=page-of]')) === 'Page 2 of 3', 'page two');
    assert.deepEqual(await rowsViews(), [114, 113, 112, 111, 110, 109, 108, 107, 106, 105]);
    assert.match(page.url(), /perPage=10/);
    assert.match(page.url(), /sort=-views/);

    await page.click('[data-testid=columns]');
    await page.locator('[data-column=meta] input').uncheck();
    await page.waitForSelector('th[data-sort=meta]', { state: 'detached' });
    await page.reload();
    await page.waitForSelector('th[data-sort=views]');
    assert.equal(await page.locator('th[data-sort=meta]').count(), 0);
    await b.shot('07-records-paged');
  });

  it('edits the application settings and moves collections through export and import', async () => {
    await page.click('[data-nav=settings]');
    await page.fill('[data-setting="meta.appName"] input', 'Acme');
    await page.locator('[data-testid=settings-save]').first().click();
    await waitFor(async () => (await apiCall(node.url, token, 'GET', '/api/settings')).meta.appName === 'Acme', 'the new app name');
    await b.shot('08-settings');

    await page.click('[data-settings=export-collections]');
    const exported = JSON.parse(await page.locator('[data-testid=export-json]').inputValue());
    assert.ok(exported.some((c) => c.name === 'posts' && c.fields.length >= 9));

    await page.click('[data-settings=import-collections]');
    const incoming = [...exported, { name: 'imported_notes', type: 'base', fields: [{ name: 'body', type: 'text' }] }];
    await page.fill('[data-testid=import-json]', JSON.stringify(incoming));
    await page.waitForSelector('[data-testid=import-review]:has-text("imported_notes")');
    await page.click('[data-testid=import-submit]');
    await page.waitForSelector('.sidebar a[data-collection=imported_notes]');
  });

  it('uploads a shipped plugin, binds it to a collection, tries it, and unbinds it', async () => {
    const wasm = shippedPlugin('field-merge');
    await page.click('[data-nav=plugins]');
    await page.click('[data-testid=upload-open]');
    await page.setInputFiles('[data-testid=plugin-file]', wasm);
    await page.click('[data-testid=upload-submit]');
    const row = page.locator('[data-testid=plugins-table] tr[data-plugin=field-merge]');
    await row.waitFor();
    assert.match(await row.innerText(), /resolver/);
    assert.match(await row.innerText(), /[0-9a-f]{12}…/);

    await page.click('[data-testid=bind-open]');
    await page.selectOption('[data-testid=bind-plugin-name]', 'field-merge');
    await page.selectOption('[data-testid=bind-role]', 'resolver');
    await page.selectOption('[data-testid=bind-collection]', 'posts');
    await page.click('[data-testid=bind-submit]');
    await page.waitForSelector('[data-testid=bindings-table] tr[data-collection=posts]:has-text("field-merge")');
    const bindings = await apiCall(node.url, token, 'GET', '/api/plugins/bindings');
    assert.deepEqual(bindings.map((x) => [x.role, x.collectionName, x.active?.plugin]), [['resolver', 'posts', 'field-merge']]);

    await page.click('[data-testid=try-field-merge]');
    await page.click('[data-testid=dry-submit]');
    await page.waitForSelector('[data-testid=dry-result] :text("Resolution")');
    assert.match(await text('[data-testid=dry-result]'), /field-merge v1/);
    await b.shot('09-plugins-dry-run');
    await page.click('[data-testid=dry-run] button:has-text("Close")');

    await page.click('[data-testid=bindings-table] tr[data-collection=posts] button:has-text("Unbind")');
    await page.waitForSelector('[data-testid=bindings-table] tr[data-collection=posts] button:has-text("Roll back")');
    await b.shot('10-plugins');
  });

  it('shows a single node on the cluster page with how to start a cluster', async () => {
    await page.click('[data-nav=cluster]');
    await page.waitForSelector('[data-testid=node-mode]:has-text("single")');
    assert.match(await text('[data-testid=join-command]'), /--sync .*--join 127\.0\.0\.1:6222/);
    await b.shot('11-cluster-single');
  });

  it('is usable at phone width and follows the dark theme', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${node.url}/_/#/collections?collection=posts`);
    await page.waitForSelector('[data-testid=records-table]');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px`);
    await b.shot('12-phone-records');
    await page.click('[data-testid=new-record]');
    const panel = await page.locator('[data-testid=record-panel]').boundingBox();
    assert.ok(panel.width <= 390, `record panel is ${panel.width}px wide`);
    await b.shot('13-phone-record-editor');
    await page.click('[data-testid=record-panel] button:has-text("Close")');

    await page.emulateMedia({ colorScheme: 'dark' });
    await page.setViewportSize({ width: 1280, height: 860 });
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, bl] = bg.match(/\d+/g).map(Number);
    assert.ok(r + g + bl < 150, `dark background expected, got ${bg}`);
    await b.shot('14-dark-records');
    await page.emulateMedia({ colorScheme: 'light' });
  });

  it('made no request outside the node and no script error', () => {
    assert.deepEqual(b.outside(), []);
    assert.ok(b.requests.some((u) => u.startsWith(`${node.url}/api/`)), 'the pages called the API');
    assert.deepEqual(b.problems, []);
  });
});
