// Alerts: the alert groups to triage (open first, then acknowledged; resolved ones behind the
// state filter), each with its events of the last 24 h as a sparkline and its actions
// (acknowledge, resolve, reopen, suppress similar); the group detail view with its history
// and recent events.

import { ApiError, AuthRequired, api, withQuery } from './api.js';
import { handleError, showLogin } from './app.js';
import {
  SEVERITIES, ago, empty, errorBox, fieldList, formatTime, h, loading, number, replace, section,
  severityBadge, severityRank, svg, table,
} from './dom.js';

const FILTERS = ['state', 'min_severity', 'source', 'cluster', 'namespace', 'rule'];
const STATES = ['open', 'acknowledged', 'resolved'];
/** The state filter's choices: which states each lists. */
const VIEWS = {
  '': { label: 'open and acknowledged', states: ['open', 'acknowledged'] },
  open: { label: 'open', states: ['open'] },
  acknowledged: { label: 'acknowledged', states: ['acknowledged'] },
  resolved: { label: 'resolved', states: ['resolved'] },
  all: { label: 'all', states: STATES },
};
const PAGE_SIZE = 100;
const HOUR = 3600 * 1000;
/** Sparkline requests in flight at once. */
const SPARK_PARALLEL = 4;

/** The actions that apply to a group in `state` (as the API's transitions allow). */
const ACTIONS = {
  acknowledge: { label: 'Acknowledge', from: ['open'], done: 'acknowledged' },
  resolve: { label: 'Resolve', from: ['open', 'acknowledged'], done: 'resolved' },
  reopen: { label: 'Reopen', from: ['acknowledged', 'resolved'], done: 'reopened' },
};

export function stateBadge(state) {
  return h('span', { class: `state state-${String(state).replace(/[^a-z]/g, '')}` }, state);
}

function where(g) {
  return [g.namespace, g.workload].filter(Boolean).join('/') || '—';
}

/** The Suppressions page's form, prefilled from the group. */
export function suppressSimilarHref(g) {
  return `#/suppressions${withQuery('', { rule: g.rule, namespace: g.namespace, cluster: g.cluster, group: g.id })}`;
}

function order(a, b) {
  return STATES.indexOf(a.state) - STATES.indexOf(b.state)
    || severityRank(a.severity) - severityRank(b.severity)
    || (a.last_seen < b.last_seen ? 1 : a.last_seen > b.last_seen ? -1 : 0);
}

export async function renderAlerts(view, params, signal) {
  const values = Object.fromEntries(FILTERS.map((f) => [f, params.get(f) || '']));
  if (!VIEWS[values.state]) values.state = '';
  const input = (name, label) => h('label', {}, h('span', {}, label), h('input', {
    name, type: 'text', value: values[name], autocomplete: 'off', spellcheck: 'false',
  }));
  const stateSelect = h('select', { name: 'state', id: 'alert-state' },
    Object.entries(VIEWS).map(([value, v]) => h('option', { value, selected: values.state === value }, v.label)));
  const severity = h('select', { name: 'min_severity' },
    h('option', { value: '' }, 'any'),
    SEVERITIES.map((s) => h('option', { value: s, selected: values.min_severity === s }, `${s} or worse`)));
  const form = h('form', { class: 'filters card', id: 'alert-filters' },
    h('label', {}, h('span', {}, 'State'), stateSelect),
    h('label', {}, h('span', {}, 'Severity'), severity),
    input('source', 'Source'),
    input('cluster', 'Cluster'),
    input('namespace', 'Namespace'),
    input('rule', 'Rule'),
    h('div', { class: 'form-actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply'),
      h('a', { href: '#/alerts', class: 'button' }, 'Clear')));
  const status = h('p', { class: 'status', id: 'alerts-status', 'aria-live': 'polite' });
  const results = h('div', { id: 'alerts-results' }, loading());
  view.append(h('h1', {}, 'Alerts'), form, status, results);

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const q = Object.fromEntries(FILTERS.map((f) => [f, String(data.get(f) || '').trim()]));
    const target = `#/alerts${withQuery('', q)}`;
    if (location.hash === target) window.dispatchEvent(new HashChangeEvent('hashchange'));
    else location.hash = target;
  });
  stateSelect.addEventListener('change', () => form.requestSubmit());

  const filters = { ...values, state: undefined };
  const states = VIEWS[values.state].states;
  // One keyset cursor per state listed: `undefined` before the first page, `null` at the end.
  const cursors = Object.fromEntries(states.map((s) => [s, undefined]));
  let groups = [];
  const sparks = new Map();

  const fetchPages = async () => {
    const pages = await Promise.all(states.filter((s) => cursors[s] !== null).map(async (s) => {
      const page = await api(withQuery('/api/v1/groups', { ...filters, state: s, limit: PAGE_SIZE, cursor: cursors[s] }));
      return [s, page];
    }));
    if (signal.aborted) return;
    for (const [s, page] of pages) {
      cursors[s] = page.next_cursor || null;
      groups = groups.concat(page.groups);
    }
    groups.sort(order);
  };

  const changed = (updated) => {
    groups = groups.map((g) => (g.id === updated.id ? updated : g));
    draw();
  };

  const draw = () => {
    if (!groups.length) {
      const filtered = FILTERS.some((f) => values[f]);
      replace(results, empty(filtered ? 'No alert groups match these filters.' : 'No open or acknowledged alerts.',
        filtered ? 'Clear a filter, or choose another state.' : 'Resolved groups are listed with the state filter.'));
      return;
    }
    const more = states.some((s) => cursors[s])
      ? h('button', { type: 'button', id: 'load-more', onclick: loadMore }, 'Load more')
      : null;
    replace(results, groupTable(groups, sparks, changed), more ? h('div', { class: 'pager' }, more) : null);
    loadSparks(groups, sparks, signal);
  };

  async function loadMore(e) {
    e.target.disabled = true;
    try {
      await fetchPages();
      if (signal.aborted) return;
      draw();
    } catch (err) {
      handleError(err, status);
      e.target.disabled = false;
    }
  }

  await fetchPages();
  if (signal.aborted) return;
  draw();
  replace(status, `${number(groups.length)}${states.some((s) => cursors[s]) ? '+' : ''} group${groups.length === 1 ? '' : 's'} (${VIEWS[values.state].label}), by state, then severity, then last seen.`);
}

function groupTable(groups, sparks, changed) {
  return table([
    { label: 'Severity', cell: (g) => severityBadge(g.severity) },
    { label: 'Rule', cell: (g) => h('a', { href: `#/alerts/${g.id}`, class: 'group-link' }, g.rule), class: 'wide' },
    { label: 'Workload', cell: (g) => where(g) },
    { label: 'Cluster', cell: (g) => g.cluster },
    { label: 'Count', cell: (g) => countCell(g) },
    { label: 'Last seen', cell: (g) => h('time', { datetime: g.last_seen, title: formatTime(g.last_seen) }, ago(g.last_seen)) },
    { label: '24 h', cell: (g) => sparkCell(g, sparks) },
    { label: 'State', cell: (g) => stateBadge(g.state) },
    { label: 'Actions', cell: (g) => actionBar(g, changed) },
  ], groups, {
    onRowClick: (g) => { location.hash = `#/alerts/${g.id}`; },
    rowClass: (g) => `group-row group-${g.state}`,
  });
}

function countCell(g) {
  return h('span', { class: 'group-count' }, h('span', { class: 'count' }, number(g.count)),
    g.suppressed ? h('span', { class: 'hint suppressed-count' }, ` (${number(g.suppressed)} suppressed)`) : null);
}

/** The buttons of the actions that apply now, and *Suppress similar*. */
function actionBar(g, changed) {
  const buttons = Object.entries(ACTIONS)
    .filter(([, a]) => a.from.includes(g.state))
    .map(([action, a]) => h('button', {
      type: 'button', class: `small action-${action}`,
      onclick: () => transitionDialog(g, action, changed),
    }, a.label));
  return h('span', { class: 'actions row-actions' }, buttons,
    h('a', { href: suppressSimilarHref(g), class: 'button small suppress-similar' }, 'Suppress similar'));
}

/**
 * Asks for the optional comment of a state change in a modal <dialog>, posts it, and shows
 * the API's refusal (409: no longer applies, 400, 403: a token without the operate scope)
 * in the dialog.
 */
function transitionDialog(g, action, changed) {
  const a = ACTIONS[action];
  const comment = h('textarea', { id: 'transition-comment', name: 'comment', rows: 3, maxlength: 1000, placeholder: 'optional' });
  const error = h('p', { class: 'error dialog-error', role: 'alert', hidden: true });
  const confirm = h('button', { type: 'submit', class: 'primary confirm' }, a.label);
  const cancel = h('button', { type: 'button', class: 'cancel' }, 'Cancel');
  const form = h('form', { method: 'dialog' },
    h('h2', {}, `${a.label}: `, g.rule),
    h('p', { class: 'hint' }, `${where(g)} in ${g.cluster}, now ${g.state}.`),
    h('label', { for: 'transition-comment' }, 'Comment'),
    comment,
    error,
    h('div', { class: 'form-actions' }, confirm, cancel));
  const dialog = h('dialog', { class: 'card transition', 'data-action': action }, form);
  const close = () => { dialog.close(); dialog.remove(); };
  cancel.addEventListener('click', close);
  dialog.addEventListener('cancel', () => dialog.remove());
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    confirm.disabled = true;
    error.hidden = true;
    const text = comment.value.trim();
    try {
      const updated = await api(`/api/v1/groups/${g.id}/${action}`, { method: 'POST', body: text ? { comment: text } : {} });
      close();
      changed(updated);
    } catch (err) {
      if (err instanceof AuthRequired) {
        close();
        showLogin(err.message);
        return;
      }
      replace(error, refusal(err));
      error.hidden = false;
      confirm.disabled = false;
    }
  });
  document.body.appendChild(dialog);
  dialog.showModal();
  comment.focus();
}

/** The API's own words for a refused change, with what they mean. */
export function refusal(err) {
  if (!(err instanceof ApiError)) return String(err && err.message ? err.message : err);
  if (err.status === 403) return `Not allowed: ${err.message}. Changing alerts and suppressions needs a token with the operate scope.`;
  if (err.status === 409) return `Refused: ${err.message}.`;
  return err.message;
}

/** The cell's sparkline element, kept across redraws; filled once its events are loaded. */
function sparkCell(g, sparks) {
  if (!sparks.has(g.id)) sparks.set(g.id, { el: h('span', { class: 'spark', 'data-group': g.id }, '…'), state: 'new' });
  return sparks.get(g.id).el;
}

/** Events of the last 24 h of each group listed (GET /api/v1/events?group=), a few at a time. */
function loadSparks(groups, sparks, signal) {
  const queue = groups.map((g) => sparks.get(g.id)).filter((s) => s && s.state === 'new');
  for (const s of queue) s.state = 'queued';
  const since = new Date(Date.now() - 24 * HOUR);
  const worker = async () => {
    while (queue.length && !signal.aborted) {
      const s = queue.shift();
      const id = s.el.dataset.group;
      try {
        const page = await api(withQuery('/api/v1/events', { group: id, since: since.toISOString(), limit: 1000 }));
        if (signal.aborted) return;
        replace(s.el, sparkline(page.events.map((e) => e.time), since, Boolean(page.next_cursor)));
        s.el.dataset.total = String(page.events.length);
      } catch (err) {
        if (err instanceof AuthRequired) return;
        replace(s.el, h('span', { class: 'hint', title: err.message }, '—'));
      }
      s.state = 'done';
    }
  };
  for (let i = 0; i < SPARK_PARALLEL; i += 1) worker();
}

/** 24 hourly bars as an inline SVG, the newest hour at the right. */
export function sparkline(times, since, capped) {
  const counts = new Array(24).fill(0);
  const start = since.getTime();
  for (const t of times) {
    const i = Math.floor((new Date(t).getTime() - start) / HOUR);
    if (i >= 0 && i < 24) counts[i] += 1;
    else if (i >= 24) counts[23] += 1;
  }
  const max = Math.max(1, ...counts);
  const total = counts.reduce((x, y) => x + y, 0);
  const label = `${total}${capped ? '+' : ''} events in the last 24 h`;
  return svg('svg', { class: 'spark-svg', viewBox: '0 0 48 16', width: 96, height: 24, role: 'img', 'aria-label': label, preserveAspectRatio: 'none' },
    svg('title', {}, label),
    svg('line', { x1: 0, y1: 15.75, x2: 48, y2: 15.75, class: 'spark-base' }),
    counts.map((c, i) => (c ? svg('rect', {
      x: i * 2 + 0.2, width: 1.6, y: 16 - Math.max(1.5, (c / max) * 15), height: Math.max(1.5, (c / max) * 15), class: 'spark-bar',
    }) : null)));
}

export async function renderGroup(view, id, signal) {
  view.append(h('p', {}, h('a', { href: '#/alerts', onclick: (e) => { if (history.length > 1) { e.preventDefault(); history.back(); } } }, '← Alerts')));
  const body = h('div', { class: 'group-detail' }, loading());
  view.append(body);
  const load = async () => {
    let g;
    try {
      g = await api(`/api/v1/groups/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status === 404 || e.status === 400) {
        replace(body, errorBox(e));
        return;
      }
      throw e;
    }
    if (signal.aborted) return;
    const reload = () => load().catch((e) => handleError(e, body));
    replace(body,
      h('h1', { class: 'event-title' }, severityBadge(g.severity), ' ', g.rule, ' ', stateBadge(g.state)),
      h('div', { class: 'actions group-actions' }, actionBar(g, reload),
        h('a', { href: `#/events${withQuery('', { group: g.id, suppressed: 1 })}`, class: 'button small' }, 'All its events')),
      section('Group', fieldList([
        ['State', h('span', {}, stateBadge(g.state), ` since ${formatTime(g.state_changed_at)}`)],
        ['Severity', severityBadge(g.severity)],
        ['Source', g.source],
        ['Cluster', g.cluster],
        ['Namespace', g.namespace],
        ['Workload', g.workload],
        ['Events', h('span', {}, countCell(g))],
        ['First seen', `${formatTime(g.first_seen)} (${ago(g.first_seen)})`],
        ['Last seen', `${formatTime(g.last_seen)} (${ago(g.last_seen)})`],
        ['Id', g.id],
      ])),
      section('History', g.history.length ? table([
        { label: 'When', cell: (c) => h('time', { datetime: c.at }, formatTime(c.at)) },
        { label: 'By', cell: (c) => c.actor },
        { label: 'State', cell: (c) => stateBadge(c.state) },
        { label: 'Comment', cell: (c) => (c.comment ? h('span', { class: 'message' }, c.comment) : '—'), class: 'wide' },
      ], g.history.slice().sort((x, y) => (x.at < y.at ? -1 : x.at > y.at ? 1 : 0)), { rowClass: () => 'history-row' }) : empty('No state changes yet.', 'The group has been open since its first event.')),
      section('Recent events', g.events.length ? table([
        { label: 'Time', cell: (e) => h('time', { datetime: e.time }, formatTime(e.time)) },
        { label: 'Severity', cell: (e) => severityBadge(e.severity) },
        { label: 'Where', cell: (e) => [e.namespace, e.pod].filter(Boolean).join('/') || e.node || '—' },
        { label: 'Message', cell: (e) => h('span', {},
          h('a', { href: `#/events/${encodeURIComponent(e.id)}`, class: 'message' }, e.message),
          e.suppressed ? h('span', { class: 'tag-suppressed' }, 'suppressed') : null), class: 'wide' },
      ], g.events, {
        onRowClick: (e) => { location.hash = `#/events/${encodeURIComponent(e.id)}`; },
        rowClass: (e) => `group-event-row${e.suppressed ? ' suppressed' : ''}`,
      }) : empty('No events stored for this group.', 'Retention may have removed them.')));
  };
  await load();
}
