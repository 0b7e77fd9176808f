// Findings: vulnerabilities and misconfigurations per image or node, open against fixed, and
// the findings of the chosen target.

import { api, withQuery } from './api.js';
import { handleError } from './app.js';
import {
  SEVERITIES, counter, empty, formatTime, h, loading, number, replace, section, severityBadge,
  table,
} from './dom.js';

const PAGE_SIZE = 100;

export async function renderFindings(view, params, signal) {
  const kind = params.get('kind') || '';
  const state = ['open', 'fixed', 'all'].includes(params.get('state')) ? params.get('state') : 'open';
  const targetKind = params.get('image') ? 'image' : params.get('node') ? 'node' : null;
  const target = targetKind ? params.get(targetKind) : null;

  const link = (changes, label, active) => {
    const next = { kind, state, image: params.get('image'), node: params.get('node'), ...changes };
    return h('a', { href: `#/findings${withQuery('', next)}`, class: active ? 'active' : null }, label);
  };
  const choices = h('div', { class: 'toolbar' },
    h('div', { class: 'range', role: 'group', 'aria-label': 'Kind' },
      link({ kind: '' }, 'all kinds', !kind),
      link({ kind: 'vulnerability' }, 'vulnerabilities', kind === 'vulnerability'),
      link({ kind: 'misconfiguration' }, 'misconfigurations', kind === 'misconfiguration'),
      link({ kind: 'secret' }, 'secrets', kind === 'secret')),
    h('div', { class: 'range', role: 'group', 'aria-label': 'State' },
      link({ state: 'open' }, 'open', state === 'open'),
      link({ state: 'fixed' }, 'fixed', state === 'fixed'),
      link({ state: 'all' }, 'all', state === 'all')));
  const summary = h('div', {}, loading());
  const list = h('div', {}, loading());
  view.append(h('h1', {}, 'Findings'), choices, summary, list);

  const stats = await api(withQuery('/api/v1/stats/findings', { kind, top: 100 }));
  if (signal.aborted) return;
  if (!stats.open && !stats.fixed) {
    replace(summary, empty('No findings yet.', 'Post a Trivy or kube-bench report to /ingest?source=trivy (or kube-bench).'));
    replace(list);
    return;
  }
  const counters = h('div', { class: 'counters' },
    counter('open', number(stats.open), 'open'),
    counter('fixed', number(stats.fixed), 'fixed'),
    SEVERITIES.filter((s) => stats.open_by_severity[s]).map((s) => counter(`open ${s}`, number(stats.open_by_severity[s]), `sev-${s}`)));
  const targets = table([
    { label: 'Target', cell: (t) => link({ image: t.kind === 'image' ? t.target : null, node: t.kind === 'node' ? t.target : null }, t.target, t.target === target) },
    { label: 'Kind', cell: (t) => t.kind },
    { label: 'Open', cell: (t) => h('span', { class: 'open-count' }, number(t.open)) },
    { label: 'Open by severity', cell: (t) => h('span', { class: 'badges' }, SEVERITIES.filter((s) => t.open_by_severity[s]).map((s) => h('span', { class: `sev sev-${s}` }, `${t.open_by_severity[s]} ${s}`))), class: 'wide' },
    { label: 'Fixed', cell: (t) => number(t.fixed) },
  ], stats.targets, { rowClass: (t) => `target-row target-${t.kind}` });
  const more = stats.total_targets > stats.targets.length
    ? h('p', { class: 'hint' }, `The ${stats.targets.length} of ${stats.total_targets} targets with the most severe open findings.`) : null;
  replace(summary, section('By image and node', counters, targets, more));

  const query = {
    kind, state: state === 'all' ? '' : state,
    image: params.get('image'), node: params.get('node'), limit: PAGE_SIZE,
  };
  let findings = [];
  let next = null;
  const title = target ? `Findings of ${target}` : 'Findings, most severe first';
  const draw = () => {
    const body = findings.length ? findingTable(findings) : empty(`No ${state === 'all' ? '' : `${state} `}findings here.`);
    const pager = next ? h('button', { type: 'button', onclick: loadMore }, 'Load more') : null;
    replace(list, section(title, target ? link({ image: null, node: null }, 'Show every target') : null, body, pager));
  };
  async function loadMore(e) {
    e.target.disabled = true;
    try {
      const page = await api(withQuery('/api/v1/findings', { ...query, cursor: next }));
      findings = findings.concat(page.findings);
      next = page.next_cursor;
      draw();
    } catch (err) {
      handleError(err, list);
    }
  }
  const page = await api(withQuery('/api/v1/findings', query));
  if (signal.aborted) return;
  findings = page.findings;
  next = page.next_cursor;
  draw();
}

function findingTable(findings) {
  return table([
    { label: 'Severity', cell: (f) => severityBadge(f.severity) },
    { label: 'Rule', cell: (f) => (f.event_id ? h('a', { href: `#/events/${encodeURIComponent(f.event_id)}` }, f.rule) : f.rule) },
    { label: 'State', cell: (f) => h('span', { class: `state state-${f.state === 'fixed' ? 'fixed' : 'open'}` }, f.state) },
    { label: 'Target', cell: (f) => f.image || f.node || f.scope },
    { label: 'Package', cell: (f) => (f.fields && f.fields.package ? `${f.fields.package} ${f.fields.installed_version || ''}` : '—') },
    { label: 'Message', cell: (f) => h('span', { class: 'message' }, f.message), class: 'wide' },
    { label: 'Last seen', cell: (f) => formatTime(f.last_seen) },
    { label: 'Fixed', cell: (f) => (f.fixed_at ? formatTime(f.fixed_at) : '—') },
  ], findings, { rowClass: () => 'finding-row' });
}
