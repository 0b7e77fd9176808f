// Overview: cluster risk with its trend, the riskiest namespaces and workloads with their top
// factors, events over time by severity, and events by source and by rule.

import uPlot from './uPlot.esm.js';
import { ApiError, api, withQuery } from './api.js';
import { setParams } from './app.js';
import {
  SEVERITIES, counter, empty, errorBox, formatTime, h, loading, number, replace, section, table,
} from './dom.js';

export const SEVERITY_COLORS = {
  emergency: '#7a0019', alert: '#b00020', critical: '#d7263d', error: '#f46036',
  warning: '#f5b342', notice: '#2e86ab', informational: '#5c946e', debug: '#8d99ae',
};

const RANGES = { '1h': 3600, '24h': 86400, '7d': 7 * 86400 };

export async function renderOverview(view, params, signal) {
  const range = RANGES[params.get('range')] ? params.get('range') : '24h';
  const risk = h('div', { class: 'risk' }, loading());
  const events = h('div', { class: 'events-summary' }, loading());
  view.append(h('h1', {}, 'Overview'), risk, events);
  // Both halves load at once; a failing one shows its error, the other still renders.
  const results = await Promise.allSettled([
    renderRisk(risk, signal),
    renderEventStats(events, range, signal),
  ]);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

async function renderRisk(target, signal, note) {
  let summary;
  try {
    summary = await api('/api/v1/risk?top=5');
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      replace(target, section('Risk', empty('Risk scores are not available on this hub.', 'The risk API answered 404.')));
      return;
    }
    if (e instanceof ApiError) {
      replace(target, section('Risk', errorBox(e)));
      return;
    }
    throw e;
  }
  if (signal.aborted) return;
  const recompute = h('button', { type: 'button', id: 'recompute' }, 'Recompute now');
  const status = h('span', { class: 'status', id: 'recompute-status', 'aria-live': 'polite' }, note);
  recompute.addEventListener('click', async () => {
    recompute.disabled = true;
    replace(status, 'Computing…');
    try {
      const done = await api('/api/v1/risk/recompute', { method: 'POST' });
      if (!signal.aborted) await renderRisk(target, signal, `Computed in ${number(done.duration_ms)} ms.`);
    } catch (e) {
      replace(status, e.message);
      recompute.disabled = false;
    }
  });
  const actions = h('div', { class: 'actions' }, recompute, status);
  if (!summary || !summary.computed_at) {
    replace(target, section('Risk', empty('No risk scores have been computed yet.', 'The analyst computes them on a schedule; or compute them now.'), actions));
    return;
  }
  const clusters = h('div', { class: 'cluster-scores' });
  for (const score of summary.clusters) {
    clusters.appendChild(await clusterScore(score));
  }
  if (!summary.clusters.length) clusters.appendChild(empty('No cluster has a score yet.'));
  replace(target,
    section('Risk', h('p', { class: 'hint' }, `Computed ${formatTime(summary.computed_at)}`), clusters, actions),
    section('Riskiest namespaces', scoreTable(summary.top_namespaces, 'No namespace has a score yet.', false)),
    section('Riskiest workloads', scoreTable(summary.top_workloads, 'No workload has a score yet.', true)));
}

export function delta(value) {
  if (value === null || value === undefined) return h('span', { class: 'delta' }, 'new');
  if (value > 0) return h('span', { class: 'delta up', title: 'higher than the previous computation' }, `▲ ${value.toFixed(1)}`);
  if (value < 0) return h('span', { class: 'delta down', title: 'lower than the previous computation' }, `▼ ${Math.abs(value).toFixed(1)}`);
  return h('span', { class: 'delta' }, '= 0.0');
}

function scoreClass(score) {
  if (score >= 70) return 'score high';
  if (score >= 40) return 'score medium';
  return 'score low';
}

async function clusterScore(score) {
  const card = h('div', { class: 'cluster-score', 'data-cluster': score.cluster },
    h('div', { class: 'name' }, score.cluster),
    h('div', { class: scoreClass(score.score) }, score.score.toFixed(1)),
    h('div', {}, delta(score.delta), score.previous !== null && score.previous !== undefined ? ` (was ${score.previous.toFixed(1)})` : ''),
    factorList(score.factors));
  // The trend: the cluster's score over its last computations.
  try {
    const history = await api(withQuery(`/api/v1/risk/cluster/${encodeURIComponent(score.name)}/history`, { cluster: score.cluster, limit: 30 }));
    const items = (history.items || []).slice().reverse();
    if (items.length >= 2) {
      const box = h('div', { class: 'sparkline', 'aria-label': 'score history' });
      card.appendChild(box);
      const data = [items.map((i) => new Date(i.computed_at).getTime() / 1000), items.map((i) => i.score)];
      requestAnimationFrame(() => {
        new uPlot({
          width: Math.max(box.clientWidth, 160), height: 60, legend: { show: false },
          cursor: { show: false }, axes: [{ show: false }, { show: false }],
          scales: { y: { range: [0, 100] } },
          series: [{}, { stroke: '#1f3a5f', width: 2 }],
        }, data, box);
      });
    }
  } catch {
    // No history is no trend line; the delta above still says which way it went.
  }
  return card;
}

function factorList(factors) {
  if (!factors || !factors.length) return h('p', { class: 'hint' }, 'No contributing factors.');
  return h('ul', { class: 'factors' }, factors.slice(0, 3).map((f) => h('li', {},
    h('span', { class: `factor factor-${['runtime', 'vulnerability', 'misconfiguration', 'exposure'].includes(f.kind) ? f.kind : 'other'}` }, f.kind),
    ' ', f.description, ' ', h('span', { class: 'points' }, `+${Number(f.points).toFixed(1)}`))));
}

function scoreTable(items, none, workloads) {
  if (!items || !items.length) return empty(none);
  const columns = [
    { label: 'Score', cell: (s) => h('span', { class: scoreClass(s.score) }, s.score.toFixed(1)) },
    { label: 'Trend', cell: (s) => delta(s.delta) },
  ];
  if (workloads) {
    columns.push({ label: 'Workload', cell: (s) => `${s.kind}/${s.name}` });
    columns.push({ label: 'Namespace', cell: (s) => s.namespace || '—' });
  } else {
    columns.push({ label: 'Namespace', cell: (s) => s.name });
  }
  columns.push({ label: 'Cluster', cell: (s) => s.cluster });
  columns.push({ label: 'Top factors', cell: (s) => factorList(s.factors), class: 'wide' });
  return table(columns, items, { rowClass: () => (workloads ? 'workload-row' : 'namespace-row') });
}

async function renderEventStats(target, range, signal) {
  const to = new Date();
  const from = new Date(to.getTime() - RANGES[range] * 1000);
  const stats = await api(withQuery('/api/v1/stats/events', { from: from.toISOString(), to: to.toISOString(), top: 10 }));
  if (signal.aborted) return;
  const picker = h('div', { class: 'range', role: 'group', 'aria-label': 'Time range' },
    Object.keys(RANGES).map((key) => h('a', {
      href: `#/overview?range=${key}`, class: key === range ? 'active' : null,
    }, key)));
  const counters = h('div', { class: 'counters' },
    counter('events', number(stats.total), 'total'),
    SEVERITIES.filter((s) => stats.by_severity[s]).map((s) => counter(s, number(stats.by_severity[s]), `sev-${s}`)));
  const chart = h('div', { class: 'chart', id: 'events-chart' });
  const parts = [
    section(`Events, last ${range}`, picker, counters,
      stats.total ? chart : empty('No events in this time range.', 'Post events to /ingest, or pick a longer range.')),
    h('div', { class: 'two' },
      section('By source', barList(stats.by_source.map((s) => [s.source, s.count, `#/events?source=${encodeURIComponent(s.source)}`]), 'No sources.')),
      section('By rule', barList(stats.by_rule.map((r) => [r.rule, r.count, `#/events?rule=${encodeURIComponent(r.rule)}`]), 'No rules.'))),
  ];
  replace(target, ...parts);
  setParams('overview', { range: range === '24h' ? null : range });
  if (stats.total) drawChart(chart, stats, signal);
}

function drawChart(box, stats, signal) {
  const present = SEVERITIES.filter((s) => stats.by_severity[s]);
  const data = [stats.buckets.map((b) => new Date(b.start).getTime() / 1000)];
  for (const s of present) data.push(stats.buckets.map((b) => b.counts[s] || 0));
  const size = () => ({ width: Math.max(box.clientWidth - 8, 240), height: 240 });
  const plot = new uPlot({
    ...size(),
    series: [{}, ...present.map((s) => ({
      label: s, stroke: SEVERITY_COLORS[s], width: 2, points: { show: true, size: 4 },
    }))],
    axes: [{}, { label: 'events', size: 50 }],
    scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
  }, data, box);
  const onResize = () => plot.setSize(size());
  window.addEventListener('resize', onResize);
  signal.addEventListener('abort', () => {
    window.removeEventListener('resize', onResize);
    plot.destroy();
  });
}

export function barList(rows, none) {
  if (!rows.length) return empty(none);
  const max = Math.max(...rows.map((r) => r[1]));
  return h('ol', { class: 'bars' }, rows.map(([label, count, href]) => {
    const bar = h('meter', { min: 0, max, value: count, 'aria-hidden': 'true' });
    return h('li', {}, h('a', { href }, label), h('span', { class: 'count' }, number(count)), bar);
  }));
}
