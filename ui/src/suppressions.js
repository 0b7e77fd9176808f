// Suppressions: the active ones (the expired ones on request) with their match in words, a
// delete button for those made through the API, and the form that makes one — reached also
// from an alert group's *Suppress similar*, prefilled from the group.

import { ApiError, AuthRequired, api, withQuery } from './api.js';
import { handleError, setParams, showLogin } from './app.js';
import { refusal } from './alerts.js';
import {
  SEVERITIES, ago, empty, formatTime, h, loading, replace, section, table, toLocalInput,
  toRfc3339, until,
} from './dom.js';

const DAY = 86400 * 1000;
/** The hub's default longest suppression (store `max_suppression_days`). */
const MAX_DAYS = 90;
const DEFAULT_DAYS = 7;

/** The filter language's lists, one value (glob) a line in the form. */
const LISTS = [
  { name: 'rules', label: 'Rules', hint: 'one rule a line; * and ? match any text' },
  { name: 'namespaces', label: 'Namespaces', hint: 'one a line' },
  { name: 'clusters', label: 'Clusters', hint: 'one a line' },
  { name: 'sources', label: 'Sources', hint: 'falco, trivy, …; one a line' },
  { name: 'tags', label: 'Tags', hint: 'events with at least one of them' },
];

export async function renderSuppressions(view, params, signal) {
  const expired = params.get('expired') === '1';
  const prefill = { rules: params.get('rule'), namespaces: params.get('namespace'), clusters: params.get('cluster') };
  const fromGroup = params.get('group');
  const showExpired = h('input', { type: 'checkbox', id: 'show-expired', checked: expired });
  const list = h('div', { id: 'suppressions' }, loading());
  const created = h('p', { class: 'status', id: 'suppression-created', 'aria-live': 'polite' });
  const load = async () => {
    const { suppressions } = await api(withQuery('/api/v1/suppressions', { expired: expired ? 'true' : '' }));
    if (signal.aborted) return;
    replace(list, suppressions.length
      ? suppressionTable(suppressions, () => load().catch((e) => handleError(e, list)))
      : empty(expired ? 'No suppressions, active or expired.' : 'No active suppressions.',
        'Suppress an alert group from the Alerts page, or make one with the form.'));
  };
  const title = h('h2', {}, fromGroup ? 'Suppress similar' : 'New suppression');
  const origin = fromGroup ? h('p', { class: 'hint' }, 'Prefilled from ', h('a', { href: `#/alerts/${encodeURIComponent(fromGroup)}` }, 'the alert group'), '; widen or narrow it before saving.') : null;
  const form = suppressionForm(prefill, (s) => {
    replace(title, 'New suppression');
    if (origin) origin.remove();
    replace(created, h('span', { class: 'ok' }, 'Suppression created: '), `events matching it are hidden and not delivered until ${formatTime(s.expires)}.`);
    // The form is spent: leave the prefill out of the address.
    setParams('suppressions', { expired: expired ? 1 : '' });
    load().catch((e) => handleError(e, list));
  });
  showExpired.addEventListener('change', () => {
    location.hash = `#/suppressions${withQuery('', { expired: showExpired.checked ? 1 : '' })}`;
  });
  view.append(
    h('h1', {}, 'Suppressions'),
    h('p', { class: 'hint' }, 'A suppression keeps the events it matches (stored and counted) but hides them from the event list and from consumers, until it expires.'),
    h('section', { class: 'card' }, title, origin, form, created),
    h('section', { class: 'card' },
      h('div', { class: 'title-row' }, h('h2', {}, expired ? 'All suppressions' : 'Active suppressions'),
        h('label', { class: 'inline' }, showExpired, ' Show expired')),
      list));
  await load();
}

/** The match in words: every condition given, one a line. */
export function describeMatch(m) {
  const lines = [];
  const any = (values) => values.join(', ');
  if (m.rules && m.rules.length) lines.push(`rule is ${any(m.rules)}`);
  if (m.excludeRules && m.excludeRules.length) lines.push(`rule is not ${any(m.excludeRules)}`);
  if (m.namespaces && m.namespaces.include && m.namespaces.include.length) lines.push(`namespace is ${any(m.namespaces.include)}`);
  if (m.namespaces && m.namespaces.exclude && m.namespaces.exclude.length) lines.push(`namespace is not ${any(m.namespaces.exclude)}`);
  if (m.clusters && m.clusters.length) lines.push(`cluster is ${any(m.clusters)}`);
  if (m.sources && m.sources.length) lines.push(`source is ${any(m.sources)}`);
  if (m.kinds && m.kinds.length) lines.push(`kind is ${any(m.kinds)}`);
  if (m.tags && m.tags.length) lines.push(`tagged ${any(m.tags)}`);
  if (m.excludeTags && m.excludeTags.length) lines.push(`not tagged ${any(m.excludeTags)}`);
  if (m.minimumSeverity) lines.push(`severity ${m.minimumSeverity} or worse`);
  for (const [field, p] of Object.entries(m.fields || {})) {
    if (p.equals !== undefined) lines.push(`${field} is ${p.equals}`);
    if (p.in && p.in.length) lines.push(`${field} is ${any(p.in)}`);
    if (p.prefix !== undefined) lines.push(`${field} starts with ${p.prefix}`);
    if (p.glob !== undefined) lines.push(`${field} matches ${p.glob}`);
    if (p.exists !== undefined) lines.push(p.exists ? `${field} is present` : `${field} is absent`);
  }
  for (const key of Object.keys(m)) {
    if (!['rules', 'excludeRules', 'namespaces', 'clusters', 'sources', 'kinds', 'tags', 'excludeTags', 'minimumSeverity', 'fields'].includes(key)) {
      lines.push(`${key}: ${JSON.stringify(m[key])}`);
    }
  }
  return lines;
}

function suppressionTable(suppressions, reload) {
  const now = Date.now();
  return table([
    { label: 'Match', cell: (s) => h('ul', { class: 'match' }, describeMatch(s.match).map((line, i) => h('li', {}, i ? 'and ' : '', line))), class: 'wide' },
    { label: 'Reason', cell: (s) => h('span', { class: 'message reason' }, s.reason) },
    { label: 'Expires', cell: (s) => h('time', { datetime: s.expires, title: formatTime(s.expires) }, `${until(s.expires)} (${formatTime(s.expires)})`) },
    { label: 'Created', cell: (s) => h('span', {}, h('span', { class: 'created-by' }, s.created_by), ' ', h('time', { datetime: s.created_at, title: formatTime(s.created_at), class: 'hint' }, ago(s.created_at))) },
    { label: 'Origin', cell: (s) => h('span', { class: 'origin' }, s.origin) },
    { label: 'Actions', cell: (s) => (s.origin === 'api' ? deleteButton(s, reload) : h('span', { class: 'hint' }, 'declared in a Setting')) },
  ], suppressions, { rowClass: (s) => `suppression-row${new Date(s.expires).getTime() <= now ? ' expired' : ''}` });
}

/** Delete, after a second click on *Really delete* (no window.confirm). */
function deleteButton(s, reload) {
  const status = h('span', { class: 'status' });
  const remove = h('button', { type: 'button', class: 'small delete' }, 'Delete');
  const sure = h('button', { type: 'button', class: 'small danger confirm-delete', hidden: true }, 'Really delete');
  const keep = h('button', { type: 'button', class: 'small', hidden: true }, 'Keep');
  remove.addEventListener('click', () => { remove.hidden = true; sure.hidden = false; keep.hidden = false; });
  keep.addEventListener('click', () => { remove.hidden = false; sure.hidden = true; keep.hidden = true; });
  sure.addEventListener('click', async () => {
    sure.disabled = true;
    try {
      await api(`/api/v1/suppressions/${encodeURIComponent(s.id)}`, { method: 'DELETE' });
      reload();
    } catch (e) {
      if (e instanceof AuthRequired) showLogin(e.message);
      else replace(status, h('span', { class: 'error' }, refusal(e)));
      sure.disabled = false;
    }
  });
  return h('span', { class: 'actions' }, remove, sure, keep, status);
}

function lines(text) {
  return String(text || '').split('\n').map((l) => l.trim()).filter(Boolean);
}

/** Which input an API error's `field` (`match.rules[0]`, `expires`, …) is about. */
function inputOf(field) {
  if (!field) return 'form';
  if (field === 'reason' || field === 'expires') return field;
  const m = /^match\.([A-Za-z]+)/.exec(field);
  if (!m) return field === 'match' ? 'match' : 'form';
  const key = m[1];
  if (LISTS.some((l) => l.name === key) || key === 'minimumSeverity' || key === 'fields') return key;
  return 'match';
}

/**
 * The suppression form: match conditions (lists one value a line, minimum severity, field
 * predicates as JSON), a required reason and a required expiry (default 7 days, at most 90).
 * The API's refusal is shown next to the field it names.
 */
export function suppressionForm(prefill, onCreated) {
  const errors = {};
  const errorFor = (name) => {
    errors[name] = h('p', { class: 'field-error', 'data-for': name, role: 'alert', hidden: true });
    return errors[name];
  };
  const lists = LISTS.map((l) => h('label', {},
    h('span', {}, l.label),
    h('textarea', { name: l.name, id: `sup-${l.name}`, rows: 2, spellcheck: 'false', placeholder: l.hint }, prefill[l.name] || ''),
    errorFor(l.name)));
  const severity = h('label', {}, h('span', {}, 'Minimum severity'),
    h('select', { name: 'minimumSeverity', id: 'sup-minimumSeverity' }, h('option', { value: '' }, 'any'),
      SEVERITIES.map((s) => h('option', { value: s }, `${s} or worse`))),
    errorFor('minimumSeverity'));
  const fields = h('label', { class: 'span-all' }, h('span', {}, 'Fields (JSON, optional)'),
    h('textarea', { name: 'fields', id: 'sup-fields', rows: 2, spellcheck: 'false', placeholder: '{"proc.name": {"in": ["sh", "bash"]}}' }),
    errorFor('fields'));
  const now = Date.now();
  const expires = h('input', {
    type: 'datetime-local', name: 'expires', id: 'sup-expires', required: true,
    value: toLocalInput(new Date(now + DEFAULT_DAYS * DAY).toISOString()),
    min: toLocalInput(new Date(now).toISOString()),
    max: toLocalInput(new Date(now + MAX_DAYS * DAY).toISOString()),
  });
  const reason = h('input', { type: 'text', name: 'reason', id: 'sup-reason', required: true, maxlength: 1000, autocomplete: 'off', placeholder: 'why these events may be ignored' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create suppression');
  const form = h('form', { class: 'suppression-form', id: 'suppression-form' },
    h('fieldset', { class: 'filters match-fields' },
      h('legend', {}, 'Match: events meeting every condition given'),
      lists, severity, fields, h('div', { class: 'span-all' }, errorFor('match'))),
    h('div', { class: 'filters' },
      h('label', { class: 'span-2' }, h('span', {}, 'Reason (required)'), reason, errorFor('reason')),
      h('label', {}, h('span', {}, `Expires (required, at most ${MAX_DAYS} days)`), expires, errorFor('expires')),
      h('div', { class: 'form-actions' }, submit, errorFor('form'))));

  const show = (name, message) => {
    const target = errors[name] || errors.form;
    replace(target, message);
    target.hidden = false;
    const control = form.elements.namedItem(name);
    if (control && control.setAttribute) control.setAttribute('aria-invalid', 'true');
  };
  const clearErrors = () => {
    for (const el of Object.values(errors)) { el.hidden = true; replace(el); }
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  };

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors();
    const data = new FormData(form);
    const match = {};
    for (const l of LISTS) {
      const values = lines(data.get(l.name));
      if (!values.length) continue;
      if (l.name === 'namespaces') match.namespaces = { include: values };
      else match[l.name] = values;
    }
    if (data.get('minimumSeverity')) match.minimumSeverity = data.get('minimumSeverity');
    const fieldText = String(data.get('fields') || '').trim();
    if (fieldText) {
      try {
        match.fields = JSON.parse(fieldText);
      } catch (err) {
        show('fields', `Not JSON: ${err.message}`);
        return;
      }
    }
    // The browser refuses an empty expiry already (required); this is the second wall.
    const when = toRfc3339(String(data.get('expires') || ''));
    if (!when) {
      show('expires', 'Give the date and time the suppression ends.');
      return;
    }
    submit.disabled = true;
    try {
      const created = await api('/api/v1/suppressions', {
        method: 'POST', body: { match, reason: String(data.get('reason') || ''), expires: when },
      });
      form.reset();
      for (const l of LISTS) form.elements.namedItem(l.name).value = '';
      onCreated(created);
    } catch (err) {
      if (err instanceof AuthRequired) {
        showLogin(err.message);
        return;
      }
      show(err instanceof ApiError && err.status === 400 ? inputOf(err.field) : 'form', refusal(err));
    }
    submit.disabled = false;
  });
  return form;
}
