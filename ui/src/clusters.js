// Clusters: every cluster the hub has heard from, when it last did, and which sources (the
// agents and scanners) reported in the last 24 hours.

import { api, withQuery } from './api.js';
import {
  ago, empty, formatTime, h, loading, number, replace, table,
} from './dom.js';

const WINDOW_MS = 24 * 3600 * 1000;

export async function renderClusters(view, params, signal) {
  const list = h('div', { id: 'clusters' }, loading());
  view.append(h('h1', {}, 'Clusters'), list);
  const { clusters } = await api('/api/v1/clusters');
  if (signal.aborted) return;
  if (!clusters.length) {
    replace(list, empty('No cluster has reported yet.', 'Clusters appear with their first event.'));
    return;
  }
  const to = new Date();
  const from = new Date(to.getTime() - WINDOW_MS);
  // Sources per cluster come from the event aggregates of the last day, one call per cluster.
  const sources = await Promise.all(clusters.map((c) => api(withQuery('/api/v1/stats/events', {
    cluster: c.name, from: from.toISOString(), to: to.toISOString(), bucket: '1d', top: 20,
  })).then((s) => s.by_source, () => null)));
  if (signal.aborted) return;
  const rows = clusters.map((c, i) => ({ ...c, sources: sources[i] }));
  replace(list, table([
    { label: 'Cluster', cell: (c) => h('a', { href: `#/events${withQuery('', { cluster: c.name })}` }, c.name) },
    { label: 'Last seen', cell: (c) => h('span', { title: formatTime(c.last_seen) }, ago(c.last_seen)) },
    { label: 'First seen', cell: (c) => formatTime(c.first_seen) },
    { label: 'Events', cell: (c) => number(c.events) },
    { label: 'Sources reporting (24 h)', class: 'wide', cell: (c) => {
      if (c.sources === null) return 'unknown';
      if (!c.sources.length) return h('span', { class: 'hint' }, 'none in the last 24 h');
      return h('ul', { class: 'sources' }, c.sources.map((s) => h('li', {},
        h('strong', {}, s.source), ` ${number(s.count)} event${s.count === 1 ? '' : 's'}, last ${ago(s.last)}`)));
    } },
  ], rows, { rowClass: () => 'cluster-row' }));
}
