// End-to-end test of the dashboard (run by scripts/ui-test): real `falconer` hubs on temporary
// SQLite stores, real events posted over HTTP, headless Chromium driven by playwright-core.
// Every check names what it expected; the first failure ends the run with status 1.
//
// Environment: FALCONER_BIN (the binary), UI_SCREENSHOTS (directory for the PNGs),
// CHROMIUM (browser executable, default /usr/bin/chromium).

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = process.env.FALCONER_BIN || join(ROOT, 'target/debug/falconer');
const SHOTS = process.env.UI_SCREENSHOTS || join(ROOT, 'target/ui-screenshots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TOKEN = 'ui-test-query-token-7f3a';
const XSS_SCRIPT = '<script>alert(1)</script>';
const XSS_IMG = '<img src=x onerror=alert(2)>';
const XSS_RULE = 'Suspicious <b>markup</b> in command';

const started = Date.now();
const children = [];
const servers = [];
const work = mkdtempSync(join(tmpdir(), 'falconer-ui-test-'));
let passed = 0;
// The page in use, for a screenshot when a check fails.
let lastPage = null;

function log(message) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`);
}

class CheckFailed extends Error {}

function check(condition, what, detail) {
  if (!condition) throw new CheckFailed(`${what}${detail === undefined ? '' : `\n  got: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`}`);
  passed += 1;
}

/** Polls `probe` until it returns a truthy value; fails naming `what` after `ms`. */
async function eventually(what, probe, ms = 20000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await probe();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new CheckFailed(`gave up waiting: ${what}${last === undefined ? '' : `\n  last: ${JSON.stringify(last)}`}`);
}

function listen(handler) {
  return new Promise((resolve) => {
    const server = createServer(handler);
    server.listen(0, '127.0.0.1', () => {
      servers.push(server);
      resolve(server);
    });
  });
}

/** A port nothing listens on: bound, then released. */
async function deadPort() {
  const server = await listen(() => {});
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  servers.splice(servers.indexOf(server), 1);
  return port;
}

/** Starts `falconer standalone` with `config` on port 0 and reads its address from the log. */
async function startHub(name, config) {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'falconer.yaml');
  writeFileSync(file, config.replaceAll('$DIR', dir));
  const child = spawn(BIN, ['standalone', '--config', file, '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let output = '';
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new CheckFailed(`hub ${name} did not say where it listens within 30 s:\n${output}`)), 30000);
    const read = (chunk) => {
      output += chunk;
      const m = output.match(/Listening[^\n]*?"?addr"?[=:]"?([0-9.]+:[0-9]+)/) || output.match(/"addr":"([0-9.]+:[0-9]+)"[^\n]*Listening/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.on('exit', (code) => reject(new CheckFailed(`hub ${name} exited with ${code}:\n${output}`)));
  });
  child.stdout.on('data', (c) => writeFileSync(join(dir, 'hub.log'), c, { flag: 'a' }));
  child.stderr.on('data', (c) => writeFileSync(join(dir, 'hub.log'), c, { flag: 'a' }));
  log(`hub ${name} listens on ${addr}`);
  return `http://${addr}`;
}

async function request(base, path, { method = 'GET', body, headers = {}, token } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if ((body !== undefined || method === 'POST') && !h['Content-Type']) h['Content-Type'] = 'application/json';
  const response = await fetch(base + path, { method, headers: h, body: typeof body === 'string' || body === undefined ? body : JSON.stringify(body) });
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: response.status, headers: response.headers, text, json };
}

function alert({ rule, priority = 'Warning', minutesAgo = 5, output, ns = 'shop', pod = 'web-1', fields = {}, seq = 0 }) {
  const time = new Date(Date.now() - minutesAgo * 60000 - seq).toISOString();
  return {
    time,
    rule,
    priority,
    source: 'syscall',
    hostname: 'node-1',
    output: `${time}: ${priority} ${output}`,
    tags: ['container', 'ui-test'],
    output_fields: { 'k8s.ns.name': ns, 'k8s.pod.name': pod, 'proc.name': 'sh', 'container.name': 'app', ...fields },
  };
}

async function ingest(base, body, query = '', headers = {}) {
  const reply = await request(base, `/ingest${query}`, { method: 'POST', body, headers });
  check(reply.status === 202, `POST /ingest${query} is accepted`, reply.text);
  return reply.json;
}

async function seed(base) {
  const alerts = [
    alert({ rule: 'Terminal shell in container', priority: 'Critical', minutesAgo: 3, output: 'A shell was spawned in a container (user=root shell=bash)', ns: 'payments', pod: 'api-0' }),
    alert({ rule: 'Terminal shell in container', priority: 'Critical', minutesAgo: 30, output: 'A shell was spawned in a container (user=root shell=sh)', ns: 'payments', pod: 'api-1' }),
    alert({ rule: 'Read sensitive file untrusted', priority: 'Warning', minutesAgo: 90, output: 'Sensitive file opened for reading (file=/etc/shadow)', ns: 'shop', pod: 'web-1' }),
    alert({ rule: 'Outbound connection to C2 server', priority: 'Error', minutesAgo: 200, output: 'Outbound connection to a known C2 address', ns: 'shop', pod: 'web-2' }),
    alert({
      rule: XSS_RULE, priority: 'Alert', minutesAgo: 1, ns: 'payments', pod: 'api-0',
      output: `Command with markup ${XSS_SCRIPT} and ${XSS_IMG}`,
      fields: { 'proc.cmdline': `sh -c '${XSS_IMG}'`, note: XSS_SCRIPT },
    }),
  ];
  // Enough low-severity events that the events table has a second page.
  for (let i = 0; i < 60; i += 1) {
    alerts.push(alert({ rule: 'Filler notice', priority: 'Notice', minutesAgo: 10 + i, output: `Filler event number ${i}`, ns: 'batch', pod: `job-${i % 3}`, seq: i }));
  }
  const reply = await ingest(base, alerts);
  check(reply.accepted === alerts.length, 'every Falco alert is stored', reply);

  const edge = await ingest(base, [alert({ rule: 'Terminal shell in container', priority: 'Critical', minutesAgo: 7, output: 'A shell on the edge', ns: 'edge-apps', pod: 'gw-0' })], '', { 'X-Falconer-Cluster': 'edge-1' });
  check(edge.accepted === 1, 'an alert of a second cluster is stored', edge);

  const trivy = JSON.parse(readFileSync(join(ROOT, 'tests/fixtures/trivy/image-schema2.json'), 'utf8'));
  trivy.CreatedAt = new Date(Date.now() - 3600000).toISOString();
  await ingest(base, trivy, '?source=trivy');
  // A newer report of the same image without the openssl vulnerability: that one is fixed.
  const rescan = structuredClone(trivy);
  rescan.CreatedAt = new Date().toISOString();
  rescan.Results[0].Vulnerabilities = rescan.Results[0].Vulnerabilities.filter((v) => v.VulnerabilityID !== 'CVE-2026-0001');
  await ingest(base, rescan, '?source=trivy');
  const bench = readFileSync(join(ROOT, 'tests/fixtures/kube-bench/controls-totals.json'), 'utf8');
  await ingest(base, bench, '?source=kube-bench&node=node-1');
  return alerts.length + 1;
}

async function newPage(browser, viewport, problems) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  lastPage = page;
  page.on('dialog', async (dialog) => {
    problems.push(`a dialog opened: ${dialog.type()} "${dialog.message()}" — markup from an event ran`);
    await dialog.dismiss();
  });
  page.on('pageerror', (e) => problems.push(`uncaught error in the page: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of (400|401|403|404|409|502)/.test(m.text())) {
      problems.push(`console error: ${m.text()}`);
    }
  });
  return { context, page };
}

function noProblems(problems, where) {
  check(problems.length === 0, `no dialog, page error or CSP violation on ${where}`, problems.join('\n'));
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function text(page, selector) {
  return (await page.locator(selector).first().textContent()) || '';
}

async function noHorizontalOverflow(page, where) {
  const { scroll, client } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth,
  }));
  check(scroll <= client, `${where} fits a 390 px wide screen without horizontal scrolling`, `scrollWidth ${scroll} > clientWidth ${client}`);
}

async function testOpenHub(browser, base, refuser, stored) {
  // Headers of the dashboard itself.
  const index = await request(base, '/ui/');
  check(index.status === 200 && index.text.includes('<script type="module" src="app.js">'), 'GET /ui/ serves the page', index.status);
  const csp = index.headers.get('content-security-policy') || '';
  check(csp.includes("script-src 'self'") && !csp.includes('unsafe-inline') && csp.includes("default-src 'none'"), 'the page is served with a strict Content-Security-Policy', csp);
  check(index.headers.get('x-content-type-options') === 'nosniff', 'the page is served with X-Content-Type-Options: nosniff');
  const etag = index.headers.get('etag');
  const again = await request(base, '/ui/app.js', { headers: { 'If-None-Match': (await request(base, '/ui/app.js')).headers.get('etag') } });
  check(etag && again.status === 304, 'an unchanged file answers 304 to If-None-Match', again.status);
  const root = await fetch(`${base}/`, { redirect: 'manual' });
  check(root.status === 302 && root.headers.get('location') === '/ui/', 'GET / sends a browser to /ui/', root.status);

  const recompute = await request(base, '/api/v1/risk/recompute', { method: 'POST' });
  check(recompute.status === 200, 'POST /api/v1/risk/recompute computes the scores', recompute.text);

  const problems = [];
  const { context, page } = await newPage(browser, { width: 1280, height: 900 }, problems);

  // Overview.
  await page.goto(`${base}/ui/`);
  await page.locator('.counters .counter.total .value').first().waitFor();
  const stats = (await request(base, '/api/v1/stats/events?top=10')).json;
  check(stats.total >= stored, 'the stats API counts at least the posted alerts', stats.total);
  const total = await text(page, '.counters .counter.total .value');
  check(total.replace(/\D/g, '') === String(stats.total), 'the overview shows the number of events of the last 24 h', `${total} vs ${stats.total}`);
  await page.locator('#events-chart canvas').first().waitFor();
  check(await page.locator('#events-chart canvas').count() > 0, 'the overview draws the events-over-time chart');
  const bySource = await page.locator('ol.bars').first().textContent();
  check(bySource.includes('falco') && bySource.includes('trivy'), 'the overview lists events by source', bySource);
  const byRule = await page.locator('ol.bars').nth(1).textContent();
  check(byRule.includes('Filler notice') && byRule.includes('Terminal shell in container'), 'the overview lists events by rule', byRule);
  await page.locator('.cluster-score').first().waitFor();
  const score = await text(page, '.cluster-score .score');
  check(/^\d+(\.\d)?$/.test(score.trim()) && Number(score) >= 0 && Number(score) <= 100, 'the overview shows a cluster risk score from 0 to 100', score);
  check(await page.locator('.namespace-row').count() > 0, 'the overview lists the riskiest namespaces');
  const namespaces = await page.locator('.namespace-row').allTextContents();
  check(namespaces.some((t) => t.includes('payments')), 'the namespace with critical alerts is among the riskiest', namespaces);
  check(await page.locator('.workload-row, .risk .empty').count() > 0, 'the overview has a workloads section');
  await shot(page, 'overview');
  noProblems(problems, 'the overview');

  // Events: table, markup shown as text, pagination, filters, detail.
  await page.goto(`${base}/ui/#/events`);
  await page.locator('tr.event-row').first().waitFor();
  check(await page.locator('tr.event-row').count() === 50, 'the events table shows a first page of 50', await page.locator('tr.event-row').count());
  const xssRow = page.locator('tr.event-row', { hasText: 'Suspicious <b>markup</b>' });
  check(await xssRow.count() === 1, 'the rule with markup is shown as literal text in the table');
  const message = await xssRow.locator('.message').textContent();
  check(message.includes(XSS_SCRIPT) && message.includes(XSS_IMG), 'the <script> and <img onerror> of a message are shown as literal text', message);
  const injected = await page.evaluate(() => ({
    scripts: [...document.querySelectorAll('script')].map((s) => s.getAttribute('src')),
    imgs: document.querySelectorAll('img').length,
    bold: document.querySelectorAll('main b').length,
  }));
  check(injected.scripts.length === 1 && injected.scripts[0] === 'app.js' && injected.imgs === 0 && injected.bold === 0, 'no element from event data made it into the page', injected);
  while (await page.locator('#load-more').count()) {
    const before = await page.locator('tr.event-row').count();
    await page.click('#load-more');
    await eventually('the next page appended', async () => (await page.locator('tr.event-row').count()) > before);
  }
  const all = await page.locator('tr.event-row').count();
  const listed = (await request(base, '/api/v1/events?limit=1000')).json.events.length;
  check(all === listed, 'Load more follows next_cursor to the end of the list', `${all} rows vs ${listed} events`);
  await shot(page, 'events');

  await page.fill('input[name=rule]', 'Terminal shell in container');
  await page.selectOption('select[name=min_severity]', 'critical');
  await page.click('#event-filters button[type=submit]');
  await eventually('the filtered table', async () => (await page.locator('tr.event-row').count()) === 3);
  const rules = await page.locator('tr.event-row td[data-label=Rule]').allTextContents();
  check(rules.every((r) => r === 'Terminal shell in container'), 'the rule filter narrows the table', rules);
  check(page.url().includes('rule=Terminal'), 'filters are kept in the address', page.url());
  await page.fill('input[name=rule]', '');
  await page.selectOption('select[name=min_severity]', '');
  await page.fill('input[name=namespace]', 'no-such-namespace');
  await page.click('#event-filters button[type=submit]');
  await page.locator('#events-results .empty').waitFor();
  check((await text(page, '#events-results .empty')).includes('No events match'), 'an empty result says so');

  await page.goto(`${base}/ui/#/events?namespace=payments`);
  await page.locator('tr.event-row', { hasText: 'Suspicious' }).first().waitFor();
  await page.locator('tr.event-row', { hasText: 'Suspicious' }).locator('td[data-label=Rule] a').click();
  await page.locator('#event-message').waitFor();
  const detail = await text(page, '#event-message');
  check(detail.includes(XSS_SCRIPT) && detail.includes(XSS_IMG), 'the detail view shows the message with its markup as text', detail);
  const raw = await page.locator('pre[aria-label="raw payload"]').textContent();
  check(raw.includes(XSS_IMG) && raw.includes('"priority": "Alert"'), 'the detail view shows the raw payload', raw.slice(0, 200));
  const fields = await page.locator('dl.fields').textContent();
  check(fields.includes('payments') && fields.includes('api-0') && fields.includes('node-1'), 'the detail view shows the normalized fields', fields);
  check(await page.evaluate(() => document.querySelectorAll('img').length) === 0, 'the detail view made no <img> from the payload');
  await shot(page, 'event-detail');

  // Live updates: a new event appears without a reload.
  await page.goto(`${base}/ui/#/events?rule=Live%20probe&live=1`);
  await page.locator('#events-results .empty').waitFor();
  await ingest(base, [alert({ rule: 'Live probe', priority: 'Warning', minutesAgo: 0, output: 'arrived while watching' })]);
  await eventually('the live table shows the new event', async () => (await page.locator('tr.event-row', { hasText: 'arrived while watching' }).count()) === 1, 15000);
  check(true, 'live mode shows a new event without a reload');
  noProblems(problems, 'the events pages');

  // Findings.
  await page.goto(`${base}/ui/#/findings`);
  await page.locator('tr.target-row').first().waitFor();
  const targets = await page.locator('tr.target-row').allTextContents();
  check(targets.some((t) => t.includes('registry.example/shop/web:1.4.2')), 'findings are listed by image', targets);
  check(targets.some((t) => t.includes('node-1')), 'findings are listed by node', targets);
  const open = Number((await text(page, '.counter.open .value')).replace(/\D/g, ''));
  const fixed = Number((await text(page, '.counter.fixed .value')).replace(/\D/g, ''));
  const fstats = (await request(base, '/api/v1/stats/findings')).json;
  check(open === fstats.open && fixed === fstats.fixed && fixed >= 1, 'open and fixed findings are counted', { open, fixed, api: fstats });
  await page.locator('tr.target-row', { hasText: 'registry.example/shop/web:1.4.2' }).locator('a').first().click();
  await eventually('the image\'s findings', async () => (await page.locator('tr.finding-row').count()) > 0);
  const imageRows = await page.locator('tr.finding-row').allTextContents();
  check(imageRows.some((t) => t.includes('CVE-2026-0002')), 'the open findings of the chosen image are listed', imageRows);
  await page.goto(`${base}/ui/#/findings?state=fixed`);
  await eventually('the fixed findings', async () => (await page.locator('tr.finding-row', { hasText: 'CVE-2026-0001' }).count()) === 1);
  check(true, 'a vulnerability gone from the newer report is listed as fixed');
  await shot(page, 'findings');
  noProblems(problems, 'the findings page');

  // Consumers: wait for delivery, retries and a dead letter, then test and replay.
  const consumers = async () => Object.fromEntries((await request(base, '/api/v1/consumers')).json.consumers.map((c) => [c.name, c]));
  await eventually('the archive consumer delivered the events', async () => {
    const c = (await consumers()).archive;
    if (c.delivered >= stored) return true;
    throw new Error(`${c.state}: delivered ${c.delivered} of ${stored}, skipped ${c.skipped}, lag ${c.lag_events}, last error ${c.last_error}`);
  });
  await eventually('the offline webhook is Degraded with its error', async () => {
    const c = (await consumers())['offline-webhook'];
    return c.state === 'Degraded' && c.last_error;
  });
  // Retries are saved with the batch that finally goes through: the picky webhook answers
  // 503 a few times before it refuses (400) the events it dead-letters.
  await eventually('the picky webhook retried, then dead-lettered the refused events', async () => {
    const c = (await consumers())['picky-webhook'];
    return c.dead_letters > 0 && c.retries > 0;
  });
  await page.goto(`${base}/ui/#/consumers`);
  await page.locator('section.consumer').first().waitFor();
  check(await page.locator('section.consumer').count() === 3, 'every consumer is listed', await page.locator('section.consumer').count());
  const archive = page.locator('section.consumer[data-consumer=archive]');
  check((await archive.locator('.state').textContent()) === 'Active', 'the file consumer is Active', await archive.locator('.state').textContent());
  check(Number((await archive.locator('.value.delivered').textContent()).replace(/\D/g, '')) >= stored, 'the file consumer shows what it delivered');
  const offline = page.locator('section.consumer[data-consumer="offline-webhook"]');
  check((await offline.locator('.last-error').textContent()).includes('Connection refused'), 'the webhook at a dead port shows its last error', await offline.textContent());
  check((await offline.locator('.state').textContent()) === 'Degraded', 'the webhook at a dead port is Degraded');
  const picky = page.locator('section.consumer[data-consumer="picky-webhook"]');
  check(Number((await picky.locator('.value.retries').textContent()).replace(/\D/g, '')) > 0, 'a webhook that answered 503 shows its retries');
  check(Number((await picky.locator('.value.dead').textContent()).replace(/\D/g, '')) > 0, 'a webhook that refused events shows its dead letters');
  await archive.locator('button.test').click();
  await eventually('the test send answered', async () => (await archive.locator('.test-result').textContent()).includes('delivered'));
  check((await archive.locator('.test-result').textContent()) === 'Test event delivered.', 'Send test event through the file sink says delivered', await archive.locator('.test-result').textContent());
  await offline.locator('button.test').click();
  await eventually('the failed test send answered', async () => (await offline.locator('.test-result').textContent()).includes('not delivered'));
  check(true, 'Send test event through the dead webhook says it was not delivered, and why');
  await picky.locator('tr.dead-letter-row').first().waitFor();
  const letters = await picky.locator('tr.dead-letter-row').count();
  check(letters > 0, 'dead letters are listed', letters);
  check((await picky.locator('tr.dead-letter-row').first().textContent()).includes('400'), 'a dead letter shows why it was refused', await picky.locator('tr.dead-letter-row').first().textContent());
  await shot(page, 'consumers');
  refuser.accept = true;
  await picky.locator('button.replay-all').click();
  await eventually('the replay answered', async () => (await picky.locator('.replay-result').textContent()).includes('Replay requested'));
  const replayText = await picky.locator('.replay-result').textContent();
  check(replayText.includes(`${letters} dead letter`), 'Replay all says how many dead letters it requested', replayText);
  await eventually('the replayed dead letters were delivered', async () => (await request(base, '/api/v1/consumers/picky-webhook/dead-letters')).json.dead_letters.length === 0);
  check(refuser.accepted >= letters, 'the webhook received the replayed events', refuser.accepted);
  await page.click('#refresh');
  await eventually('the consumer shows no dead letters after replay', async () => (await picky.locator('.dead-letters').textContent()).includes('No dead letters'));
  check(true, 'after the replay the consumer has no dead letters left');
  noProblems(problems, 'the consumers page');

  // Clusters.
  await page.goto(`${base}/ui/#/clusters`);
  await page.locator('tr.cluster-row').first().waitFor();
  const clusterRows = await page.locator('tr.cluster-row').allTextContents();
  check(clusterRows.length === 2, 'both clusters are listed', clusterRows);
  const home = clusterRows.find((t) => t.includes('ui-test')) || '';
  check(home.includes('falco') && home.includes('trivy') && home.includes('kube-bench'), 'the sources reporting from a cluster are listed', home);
  check(/s ago|min ago/.test(home), 'a cluster\'s last-seen time is shown', home);
  await shot(page, 'clusters');
  noProblems(problems, 'the clusters page');

  await testTriage(page, base, problems);
  await context.close();

  // A phone.
  const phone = await newPage(browser, { width: 390, height: 844 }, problems);
  for (const [name, hash, ready] of [
    ['overview', '#/overview', '.counters'],
    ['events', '#/events', 'tr.event-row'],
    ['event-detail', null, '#event-message'],
    ['findings', '#/findings', 'tr.target-row'],
    ['consumers', '#/consumers', 'section.consumer'],
    ['clusters', '#/clusters', 'tr.cluster-row'],
    ['alerts', '#/alerts', 'tr.group-row'],
    ['suppressions', '#/suppressions', '#suppression-form'],
  ]) {
    if (hash) await phone.page.goto(`${base}/ui/${hash}`);
    else {
      const id = (await request(base, '/api/v1/events?rule=' + encodeURIComponent(XSS_RULE))).json.events[0].id;
      await phone.page.goto(`${base}/ui/#/events/${id}`);
    }
    await phone.page.locator(ready).first().waitFor();
    await noHorizontalOverflow(phone.page, `the ${name} page`);
    await shot(phone.page, `phone-${name}`);
  }
  noProblems(problems, 'the phone-sized pages');
  await phone.context.close();
}

/** Opens the comment dialog of `action` on `scope` (a row or the detail page) and confirms. */
async function transition(page, scope, action, comment) {
  await scope.locator(`button.action-${action}`).click();
  await page.locator(`dialog.transition[data-action=${action}][open]`).waitFor();
  if (comment !== undefined) await page.fill('#transition-comment', comment);
  await page.click('dialog.transition button.confirm');
}

async function testTriage(page, base, problems) {
  const RULE = 'Read sensitive file untrusted';
  const listed = (await request(base, '/api/v1/groups?state=open&limit=1000')).json.groups;
  check(listed.length > 3 && listed.every((g) => g.state === 'open'), 'the posted alerts were filed into open groups', listed.length);
  const target = listed.find((g) => g.rule === RULE);
  check(target && target.namespace === 'shop' && target.count === 1, 'the sensitive-file alert has a group of its own', target);

  // The list: every open group, by severity, each with its sparkline.
  await page.goto(`${base}/ui/#/alerts`);
  await page.locator('tr.group-row').first().waitFor();
  check(await page.locator('tr.group-row').count() === listed.length, 'the Alerts page lists every open group', await page.locator('tr.group-row').count());
  const severities = await page.locator('tr.group-row td[data-label=Severity]').allTextContents();
  const rank = (s) => ['emergency', 'alert', 'critical', 'error', 'warning', 'notice', 'informational', 'debug'].indexOf(s);
  check(severities.every((s, i) => i === 0 || rank(severities[i - 1]) <= rank(s)), 'open groups are ordered by severity', severities);
  const row = page.locator('tr.group-row', { hasText: RULE });
  check((await row.locator('td[data-label=Workload]').textContent()).startsWith('shop/'), 'a group shows its namespace/workload', await row.locator('td[data-label=Workload]').textContent());
  await eventually('the sparklines are drawn', async () => (await page.locator('tr.group-row .spark svg').count()) === listed.length);
  check(await row.locator('.spark').getAttribute('data-total') === '1', 'the sparkline counts the group\'s events of the last 24 h', await row.locator('.spark').getAttribute('data-total'));
  check(await row.locator('.spark rect').count() === 1, 'the sparkline has a bar for the hour of the event');
  const shells = page.locator('tr.group-row', { hasText: 'Terminal shell in container' });
  const shellGroups = listed.filter((g) => g.rule === 'Terminal shell in container').length;
  check(shellGroups >= 2 && await shells.count() === shellGroups, 'a rule seen in two clusters has a group in each', await shells.count());

  // Acknowledge with a comment, resolve, reopen: the state shown follows.
  await transition(page, row, 'acknowledge', 'Looking into it');
  await eventually('the acknowledged state', async () => (await row.locator('td[data-label=State]').textContent()) === 'acknowledged');
  check(await row.locator('button.action-acknowledge').count() === 0 && await row.locator('button.action-reopen').count() === 1, 'an acknowledged group offers resolve and reopen');
  check(await page.locator('dialog.transition').count() === 0, 'the dialog closes after the change');
  await shot(page, 'alerts');
  await transition(page, row, 'resolve', 'The backup job reads it');
  await eventually('the resolved state', async () => (await row.locator('td[data-label=State]').textContent()) === 'resolved');
  check(true, 'resolving a group shows it resolved');
  await transition(page, row, 'reopen', 'Seen again on web-1');
  await eventually('the reopened state', async () => (await row.locator('td[data-label=State]').textContent()) === 'open');
  check(true, 'reopening a group shows it open');

  // A change that no longer applies (someone else acknowledged it meanwhile): the 409 is shown.
  const elsewhere = await request(base, `/api/v1/groups/${target.id}/acknowledge`, { method: 'POST', body: { comment: 'from the API' } });
  check(elsewhere.status === 200, 'the group is acknowledged through the API', elsewhere.text);
  await transition(page, row, 'acknowledge');
  await eventually('the refusal of a stale change', async () => (await text(page, 'dialog.transition .dialog-error')).includes('acknowledged'));
  const conflict = await text(page, 'dialog.transition .dialog-error');
  check(conflict.startsWith('Refused: the group is acknowledged'), 'a change that does not apply shows the 409 of the API', conflict);
  await shot(page, 'alert-conflict');
  await page.click('dialog.transition button.cancel');
  check(await page.locator('dialog.transition').count() === 0, 'Cancel closes the dialog');

  // The resolved ones are behind the state filter.
  const resolved = listed.find((g) => g.rule === 'Outbound connection to C2 server');
  check((await request(base, `/api/v1/groups/${resolved.id}/resolve`, { method: 'POST' })).status === 200, 'a second group is resolved through the API');
  // Still at #/alerts: going there again would not render anew.
  await page.reload();
  await page.locator('tr.group-row').first().waitFor();
  check(await page.locator('tr.group-row', { hasText: 'Outbound connection to C2 server' }).count() === 0, 'resolved groups are not listed by default');
  const states = await page.locator('tr.group-row td[data-label=State]').allTextContents();
  check(states.indexOf('acknowledged') === states.length - 1 && states.filter((s) => s === 'open').length === states.length - 1, 'open groups come first, then acknowledged ones', states);
  await page.selectOption('#alert-state', 'resolved');
  await eventually('the resolved groups', async () => (await page.locator('tr.group-row').count()) === 1
    && (await page.locator('tr.group-row').textContent()).includes('Outbound connection to C2 server'));
  check(page.url().includes('state=resolved'), 'the state filter is kept in the address', page.url());

  // The detail: history with the comments, recent events linking to the event.
  await page.goto(`${base}/ui/#/alerts`);
  await page.locator('tr.group-row', { hasText: RULE }).locator('a.group-link').click();
  await page.locator('tr.history-row').first().waitFor();
  check(page.url().endsWith(`#/alerts/${target.id}`), 'a group opens its detail view', page.url());
  const history = await page.locator('tr.history-row').allTextContents();
  check(history.length === 4, 'the history lists every state change', history);
  check(history[0].includes('acknowledged') && history[0].includes('Looking into it')
    && history[1].includes('resolved') && history[1].includes('The backup job reads it')
    && history[2].includes('open') && history[2].includes('Seen again on web-1')
    && history[3].includes('acknowledged') && history[3].includes('from the API'), 'each history entry shows its state and comment, oldest first', history);
  check((await text(page, '.group-detail h1')).includes('acknowledged'), 'the detail shows the current state');
  check(await page.locator('tr.group-event-row').count() === 1, 'the detail lists the group\'s recent events');
  await shot(page, 'alert-detail');
  await page.locator('tr.group-event-row a').first().click();
  await page.locator('#event-message').waitFor();
  check((await text(page, '#event-message')).includes('/etc/shadow'), 'a recent event opens the event detail');
  await page.goBack();
  await page.locator('tr.history-row').first().waitFor();

  // Suppress similar: the form prefilled from the group; the expiry is required.
  await page.click('.group-actions a.suppress-similar');
  await page.locator('#suppression-form').waitFor();
  check(await page.inputValue('#sup-rules') === RULE && await page.inputValue('#sup-namespaces') === 'shop' && await page.inputValue('#sup-clusters') === 'ui-test', 'Suppress similar prefills rule, namespace and cluster',
    [await page.inputValue('#sup-rules'), await page.inputValue('#sup-namespaces'), await page.inputValue('#sup-clusters')]);
  const defaultExpiry = new Date(await page.inputValue('#sup-expires')).getTime();
  check(Math.abs(defaultExpiry - (Date.now() + 7 * 86400000)) < 3 * 60000, 'the expiry defaults to 7 days ahead', await page.inputValue('#sup-expires'));
  await page.fill('#sup-reason', 'The nightly backup job reads /etc/shadow');
  await page.fill('#sup-expires', '');
  await page.click('#suppression-form button[type=submit]');
  await page.waitForTimeout(300);
  check(await page.$eval('#sup-expires', (el) => el.validity.valueMissing), 'the form refuses an empty expiry');
  check((await request(base, '/api/v1/suppressions')).json.suppressions.length === 0, 'no suppression is made without an expiry');
  // The server's refusal shows next to the field it names: a match with no condition.
  const rulesKept = await page.inputValue('#sup-rules');
  for (const id of ['#sup-rules', '#sup-namespaces', '#sup-clusters']) await page.fill(id, '');
  await page.fill('#sup-expires', await page.evaluate(() => {
    const d = new Date(Date.now() + 3 * 86400000);
    const pad = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }));
  await page.click('#suppression-form button[type=submit]');
  await page.locator('.field-error[data-for=match]:not([hidden])').waitFor();
  const fieldError = await text(page, '.field-error[data-for=match]');
  check(fieldError.includes('at least one condition'), 'the API\'s error about `match` is shown next to the match conditions', fieldError);
  await page.fill('#sup-rules', rulesKept);
  await page.fill('#sup-namespaces', 'shop');
  await page.fill('#sup-clusters', 'ui-test');
  await page.click('#suppression-form button[type=submit]');
  await page.locator('#suppression-created .ok').waitFor();
  check(await page.locator('.field-error:not([hidden])').count() === 0, 'a successful create clears the errors');
  const made = (await request(base, '/api/v1/suppressions')).json.suppressions;
  check(made.length === 1 && made[0].origin === 'api' && made[0].match.rules[0] === RULE && made[0].match.namespaces.include[0] === 'shop', 'the suppression is stored as filled in', made);
  check(Math.abs(new Date(made[0].expires).getTime() - (Date.now() + 3 * 86400000)) < 3 * 60000, 'the suppression expires when chosen', made[0].expires);

  // The Suppressions page lists it, its match in words.
  await page.locator('tr.suppression-row').first().waitFor();
  const supRow = page.locator('tr.suppression-row');
  check(await supRow.count() === 1, 'the Suppressions page lists the new suppression', await supRow.count());
  const match = await supRow.locator('ul.match').textContent();
  check(match.includes(`rule is ${RULE}`) && match.includes('namespace is shop') && match.includes('cluster is ui-test'), 'the match is shown in words', match);
  check((await supRow.locator('.reason').textContent()) === 'The nightly backup job reads /etc/shadow', 'the reason is shown');
  check((await supRow.locator('td[data-label=Expires]').textContent()).startsWith('in 3 d'), 'the expiry is shown', await supRow.locator('td[data-label=Expires]').textContent());
  check((await supRow.locator('.origin').textContent()) === 'api' && (await supRow.locator('.created-by').textContent()).length > 0, 'origin and creator are shown', await supRow.textContent());
  await shot(page, 'suppressions');

  // A matching event posted now is kept, hidden from Events unless asked for.
  await ingest(base, [alert({ rule: RULE, priority: 'Warning', minutesAgo: 0, output: 'Sensitive file opened again after the suppression (file=/etc/shadow)', ns: 'shop', pod: 'web-1' })]);
  await eventually('the new event is stored as suppressed', async () => (await request(base, `/api/v1/events?rule=${encodeURIComponent(RULE)}&suppressed=true`)).json.events.length === 1);
  await page.goto(`${base}/ui/#/events?rule=${encodeURIComponent(RULE)}`);
  await page.locator('tr.event-row').first().waitFor();
  check(await page.locator('tr.event-row').count() === 1 && await page.locator('tr.event-row', { hasText: 'after the suppression' }).count() === 0, 'a suppressed event is hidden on Events by default', await page.locator('tr.event-row').allTextContents());
  await page.check('#show-suppressed');
  await eventually('the suppressed event shown', async () => (await page.locator('tr.event-row').count()) === 2);
  const hidden = page.locator('tr.event-row', { hasText: 'after the suppression' });
  check(await hidden.count() === 1 && (await hidden.getAttribute('class')).includes('suppressed') && (await hidden.locator('.tag-suppressed').textContent()) === 'suppressed', '“Show suppressed” lists it, marked suppressed');
  check(page.url().includes('suppressed=1'), 'the toggle is kept in the address', page.url());
  await shot(page, 'events-suppressed');
  await page.goto(`${base}/ui/#/alerts?state=all&rule=${encodeURIComponent(RULE)}`);
  await page.locator('tr.group-row').first().waitFor();
  check((await page.locator('tr.group-row td[data-label=Count]').textContent()).includes('1 suppressed'), 'the group counts its suppressed event', await page.locator('tr.group-row td[data-label=Count]').textContent());

  // Delete it (after a second click).
  await page.goto(`${base}/ui/#/suppressions`);
  await page.locator('tr.suppression-row').first().waitFor();
  await page.click('tr.suppression-row button.delete');
  await page.click('tr.suppression-row button.confirm-delete');
  await page.locator('#suppressions .empty').waitFor();
  check((await request(base, '/api/v1/suppressions')).json.suppressions.length === 0, 'Delete removes the suppression');
  await page.check('#show-expired');
  await page.locator('#suppressions .empty, tr.suppression-row').first().waitFor();
  check(page.url().includes('expired=1'), 'the expired toggle is kept in the address', page.url());
  noProblems(problems, 'the alerts and suppressions pages');
}

async function testLogin(browser, base) {
  const denied = await request(base, '/api/v1/events');
  check(denied.status === 401, 'the protected hub refuses queries without a token', denied.status);
  await ingest(base, [alert({ rule: 'Behind a token', priority: 'Error', minutesAgo: 2, output: 'only for token holders' })]);

  const problems = [];
  const { context, page } = await newPage(browser, { width: 1280, height: 900 }, problems);
  await page.goto(`${base}/ui/#/events`);
  await page.locator('form.login').waitFor();
  check((await text(page, 'form.login .error')).includes('needs a query token'), 'a protected hub shows the login form');
  await shot(page, 'login');
  await page.fill('#token', 'wrong-token');
  await page.click('form.login button[type=submit]');
  await eventually('the refusal of a wrong token', async () => (await text(page, 'form.login .error')).includes('not accepted'));
  check(true, 'a wrong token is refused with a message');
  await page.fill('#token', TOKEN);
  await page.click('form.login button[type=submit]');
  await page.locator('tr.event-row', { hasText: 'Behind a token' }).waitFor();
  check(true, 'after signing in the events are shown');
  const storage = await page.evaluate(() => ({ session: sessionStorage.getItem('falconer.queryToken'), local: localStorage.length, cookies: document.cookie }));
  check(storage.session === TOKEN && storage.local === 0 && storage.cookies === '', 'the token is kept in sessionStorage only', storage);
  await page.reload();
  await page.locator('tr.event-row', { hasText: 'Behind a token' }).waitFor();
  check(true, 'the session survives a reload of the tab');
  for (const hashRoute of ['#/overview', '#/findings', '#/consumers', '#/clusters', '#/alerts', '#/suppressions']) {
    await page.goto(`${base}/ui/${hashRoute}`);
    await page.locator('main .page h1').first().waitFor();
    check(await page.locator('form.login').count() === 0, `the ${hashRoute} page loads with the token`);
  }
  // A query token reads, but may not act: the refusal (403) is shown as the API says it.
  await page.goto(`${base}/ui/#/alerts`);
  const locked = page.locator('tr.group-row', { hasText: 'Behind a token' });
  await locked.waitFor();
  await locked.locator('button.action-acknowledge').click();
  await page.locator('dialog.transition[open]').waitFor();
  await page.click('dialog.transition button.confirm');
  await eventually('the refusal of a read-only token', async () => (await text(page, 'dialog.transition .dialog-error')).includes('operate'));
  const forbidden = await text(page, 'dialog.transition .dialog-error');
  check(forbidden.startsWith('Not allowed: ') && forbidden.includes('does not have the operate scope'), 'acknowledging with a read-only token shows the 403 plainly', forbidden);
  await shot(page, 'alert-forbidden');
  await page.click('dialog.transition button.cancel');
  check((await locked.locator('.state').textContent()) === 'open', 'the refused group stays open');
  await page.click('#logout');
  await page.locator('form.login').waitFor();
  check(await page.evaluate(() => sessionStorage.getItem('falconer.queryToken')) === null, 'signing out forgets the token');
  await shot(page, 'logged-out');
  noProblems(problems, 'the protected hub');
  await context.close();
}

async function main() {
  mkdirSync(SHOTS, { recursive: true });
  const refuser = { unavailable: 3, accept: false, accepted: 0, refused: 0 };
  const picky = await listen((req, res) => {
    req.resume();
    req.on('end', () => {
      if (refuser.unavailable > 0) {
        refuser.unavailable -= 1;
        res.writeHead(503).end('busy');
      } else if (refuser.accept) {
        refuser.accepted += 1;
        res.writeHead(200).end('{}');
      } else {
        refuser.refused += 1;
        res.writeHead(400, { 'Content-Type': 'application/json' }).end('{"error":"mapping refused"}');
      }
    });
  });
  const dead = await deadPort();
  const common = `
log: {level: info, format: json}
delivery: {poll_interval_ms: 200, backoff_initial_ms: 100, backoff_max_ms: 500, status_interval_secs: 1}
`;
  const open = await startHub('open', `cluster: ui-test
${common}
consumers:
  - name: archive
    type: file
    file: {path: $DIR/data/archive.jsonl}   # inside delivery.file_dir (the data directory)
  - name: offline-webhook
    type: webhook
    webhook: {url: "http://127.0.0.1:${dead}/hook"}
  - name: picky-webhook
    type: webhook
    webhook: {url: "http://127.0.0.1:${picky.address().port}/hook"}
    filter: {minimumSeverity: critical}
`);
  const hash = createHash('sha256').update(TOKEN).digest('hex');
  const locked = await startHub('locked', `cluster: ui-locked
${common}
auth:
  query_token_sha256: ["${hash}"]
`);
  const stored = await seed(open);
  log(`posted ${stored} events, two Trivy reports and a kube-bench report`);

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    await testOpenHub(browser, open, refuser, stored);
    log('open hub: every page checked');
    await testLogin(browser, locked);
    log('protected hub: login checked');
  } catch (e) {
    if (lastPage) {
      await lastPage.screenshot({ path: join(SHOTS, 'failure.png'), fullPage: true }).catch(() => {});
      console.error(`the page at the failure: ${join(SHOTS, 'failure.png')} (${lastPage.url()})`);
    }
    throw e;
  } finally {
    await browser.close();
  }
}

let status = 0;
try {
  await main();
  log(`ui-test passed: ${passed} checks; screenshots in ${SHOTS}`);
} catch (e) {
  status = 1;
  console.error(`\nui-test FAILED: ${e instanceof CheckFailed ? e.message : e.stack}`);

  console.error(`hub logs: ${work}/*/hub.log; screenshots so far: ${SHOTS}`);
}
for (const child of children) child.kill('SIGTERM');
for (const server of servers) server.close();
await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r() : c.on('exit', r)))));
if (status === 0) rmSync(work, { recursive: true, force: true });
process.exit(status);
