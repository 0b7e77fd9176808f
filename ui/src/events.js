// Events: the filterable, keyset-paginated table (optionally polling for new events) and the
// detail view with the normalized fields and the raw payload.

import { api, withQuery } from './api.js';
import { handleError, setParams } from './app.js';
import {
  SEVERITIES, empty, errorBox, fieldList, formatTime, h, jsonBlock, loading, replace, section,
  severityBadge, table, toLocalInput, toRfc3339,
} from './dom.js';

const FILTERS = ['since', 'until', 'min_severity', 'source', 'cluster', 'namespace', 'pod', 'rule', 'text', 'group'];
const PAGE_SIZE = 50;
const POLL_MS = 5000;

export async function renderEvents(view, params, signal) {
  const values = Object.fromEntries(FILTERS.map((f) => [f, params.get(f) || '']));
  const live = params.get('live') === '1';
  // Suppressed events are kept but hidden unless asked for.
  const withSuppressed = params.get('suppressed') === '1';
  const input = (name, label, type = 'text') => h('label', {}, h('span', {}, label), h('input', {
    name, type, value: type === 'datetime-local' ? toLocalInput(values[name]) : values[name],
    autocomplete: 'off', spellcheck: 'false',
  }));
  const severity = h('select', { name: 'min_severity' },
    h('option', { value: '' }, 'any'),
    SEVERITIES.map((s) => h('option', { value: s, selected: values.min_severity === s }, `${s} or worse`)));
  const liveBox = h('input', { type: 'checkbox', name: 'live', checked: live });
  const suppressedBox = h('input', { type: 'checkbox', name: 'suppressed', id: 'show-suppressed', checked: withSuppressed });
  const form = h('form', { class: 'filters card', id: 'event-filters' },
    input('since', 'From', 'datetime-local'),
    input('until', 'To', 'datetime-local'),
    h('label', {}, h('span', {}, 'Severity'), severity),
    input('source', 'Source'),
    input('cluster', 'Cluster'),
    input('namespace', 'Namespace'),
    input('pod', 'Pod'),
    input('rule', 'Rule'),
    input('text', 'Text in message', 'search'),
    input('group', 'Alert group'),
    h('div', { class: 'form-actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply'),
      h('a', { href: '#/events', class: 'button' }, 'Clear'),
      h('label', { class: 'inline' }, liveBox, ' Live (every 5 s)'),
      h('label', { class: 'inline' }, suppressedBox, ' Show suppressed')));
  const status = h('p', { class: 'status', id: 'events-status', 'aria-live': 'polite' });
  const results = h('div', { id: 'events-results' }, loading());
  view.append(h('h1', {}, 'Events'), form, status, results);

  const query = () => {
    const data = new FormData(form);
    const q = {};
    for (const f of FILTERS) {
      const v = String(data.get(f) || '').trim();
      q[f] = f === 'since' || f === 'until' ? toRfc3339(v) : v;
    }
    return q;
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const target = `#/events${withQuery('', { ...query(), live: liveBox.checked ? 1 : '', suppressed: suppressedBox.checked ? 1 : '' })}`;
    // The same filters again: no hashchange, so ask for the render ourselves (fresh data).
    if (location.hash === target) window.dispatchEvent(new HashChangeEvent('hashchange'));
    else location.hash = target;
  });
  liveBox.addEventListener('change', () => {
    setParams('events', { ...values, live: liveBox.checked ? 1 : '', suppressed: withSuppressed ? 1 : '' });
    schedule();
  });
  // A different list: load it afresh.
  suppressedBox.addEventListener('change', () => form.requestSubmit());

  const filters = { ...Object.fromEntries(FILTERS.map((f) => [f, values[f]])), suppressed: withSuppressed ? '' : 'false' };
  let events = [];
  let next = null;

  const draw = () => {
    if (!events.length) {
      const filtered = FILTERS.some((f) => values[f]);
      replace(results, empty(filtered ? 'No events match these filters.' : 'No events stored yet.',
        filtered ? 'Widen the time range or clear a filter.' : 'Point Falco or another source at /ingest.'),
      withSuppressed ? null : h('p', { class: 'hint' }, 'Suppressed events are hidden; tick “Show suppressed” to list them too.'));
      return;
    }
    const more = next ? h('button', { type: 'button', id: 'load-more', onclick: loadMore }, 'Load more') : h('p', { class: 'hint' }, 'End of the list.');
    replace(results, eventTable(events), h('div', { class: 'pager' }, more));
  };

  async function loadMore(e) {
    e.target.disabled = true;
    try {
      const page = await api(withQuery('/api/v1/events', { ...filters, limit: PAGE_SIZE, cursor: next }));
      if (signal.aborted) return;
      events = events.concat(page.events);
      next = page.next_cursor;
      draw();
    } catch (err) {
      handleError(err, status);
      e.target.disabled = false;
    }
  }

  const first = await api(withQuery('/api/v1/events', { ...filters, limit: PAGE_SIZE }));
  if (signal.aborted) return;
  events = first.events;
  next = first.next_cursor;
  draw();
  replace(status, `Showing ${events.length}${next ? '+' : ''} events, newest first${withSuppressed ? ', suppressed ones included' : '; suppressed ones hidden'}.`);

  // Live: ask for the newest page again and put what is new on top.
  let timer = null;
  function schedule() {
    clearTimeout(timer);
    if (!liveBox.checked || signal.aborted) return;
    timer = setTimeout(poll, POLL_MS);
  }
  async function poll() {
    try {
      const page = await api(withQuery('/api/v1/events', { ...filters, limit: PAGE_SIZE }));
      if (signal.aborted) return;
      const known = new Set(events.map((e) => e.id));
      const fresh = page.events.filter((e) => !known.has(e.id));
      if (fresh.length) {
        events = fresh.concat(events);
        draw();
      }
      replace(status, `Live: ${fresh.length} new at ${new Date().toLocaleTimeString()}.`);
    } catch (err) {
      handleError(err, status);
    }
    schedule();
  }
  signal.addEventListener('abort', () => clearTimeout(timer));
  schedule();
}

function where(e) {
  return [e.namespace, e.pod].filter(Boolean).join('/') || e.node || '—';
}

function eventTable(events) {
  return table([
    { label: 'Time', cell: (e) => h('time', { datetime: e.time }, formatTime(e.time)) },
    { label: 'Severity', cell: (e) => severityBadge(e.severity) },
    { label: 'Source', cell: (e) => e.source },
    { label: 'Rule', cell: (e) => h('span', {}, h('a', { href: `#/events/${encodeURIComponent(e.id)}` }, e.rule),
      e.suppressed ? h('span', { class: 'tag-suppressed', title: `suppression ${e.suppressed}` }, 'suppressed') : null) },
    { label: 'Cluster', cell: (e) => e.cluster },
    { label: 'Where', cell: (e) => where(e) },
    { label: 'Message', cell: (e) => h('span', { class: 'message' }, e.message), class: 'wide' },
  ], events, {
    onRowClick: (e) => { location.hash = `#/events/${encodeURIComponent(e.id)}`; },
    rowClass: (e) => `event-row${e.suppressed ? ' suppressed' : ''}`,
  });
}

export async function renderEvent(view, id, signal) {
  view.append(h('p', {}, h('a', { href: '#/events', onclick: (e) => { if (history.length > 1) { e.preventDefault(); history.back(); } } }, '← Events')));
  let event;
  try {
    event = await api(`/api/v1/events/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.status === 404 || e.status === 400) {
      view.append(errorBox(e));
      return;
    }
    throw e;
  }
  if (signal.aborted) return;
  const workload = event.workload ? `${event.workload.kind}/${event.workload.name}` : null;
  const link = (key, value) => (value ? h('a', { href: `#/events${withQuery('', { [key]: value })}` }, value) : null);
  view.append(
    h('h1', { class: 'event-title' }, severityBadge(event.severity), ' ', event.rule),
    section('Message', h('p', { class: 'message', id: 'event-message' }, event.message)),
    section('Normalized fields', fieldList([
      ['Time', `${formatTime(event.time)} (${event.time})`],
      ['Received', `${formatTime(event.received_at)} (${event.received_at})`],
      ['Severity', h('span', {}, severityBadge(event.severity), ` source says "${event.severity_raw}"`)],
      ['Kind', event.kind],
      ['Source', h('span', {}, link('source', event.source), event.source_version ? ` ${event.source_version}` : '')],
      ['Rule', link('rule', event.rule)],
      ['Tags', event.tags && event.tags.length ? event.tags.join(', ') : null],
      ['Cluster', link('cluster', event.cluster)],
      ['Namespace', link('namespace', event.namespace)],
      ['Pod', link('pod', event.pod)],
      ['Container', event.container],
      ['Image', event.image],
      ['Node', event.node],
      ['Workload', workload],
      ['Alert group', event.group ? h('a', { href: `#/alerts/${encodeURIComponent(event.group)}` }, event.group) : null],
      ['Suppressed', event.suppressed ? h('span', {}, h('span', { class: 'tag-suppressed' }, 'suppressed'), ' by ', h('a', { href: '#/suppressions?expired=1' }, event.suppressed)) : null],
      ['Id', event.id],
    ])),
    section('Fields', jsonBlock(event.fields, 'fields')),
    section('Raw payload', h('p', { class: 'hint' }, 'Exactly as received.'), jsonBlock(event.raw, 'raw payload')),
  );
}

