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
    if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of (401|404|502)/.test(m.text())) {
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
  for (const hashRoute of ['#/overview', '#/findings', '#/consumers', '#/clusters']) {
    await page.goto(`${base}/ui/${hashRoute}`);
    await page.locator('main .page h1').first().waitFor();
    check(await page.locator('form.login').count() === 0, `the ${hashRoute} page loads with the token`);
  }
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
