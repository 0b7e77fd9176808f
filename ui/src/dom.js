// Building the page from data without ever parsing data as markup: every value goes in
// through createElement and textContent, so an event payload holding `<script>` or
// `<img onerror=…>` shows as the text it is.

/**
 * h('a', {href: '#/x', class: 'c', onclick: fn}, 'text', child, [more]) — attributes by
 * setAttribute (`on…` keys become listeners), children appended as nodes or text.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'style' || key.toLowerCase().startsWith('on')) {
      throw new Error(`refusing attribute ${key}`);
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** h() for SVG elements (createElementNS); the same refusals of `style` and `on…`. */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'style' || key.toLowerCase().startsWith('on')) throw new Error(`refusing attribute ${key}`);
    el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

export const SEVERITIES = [
  'emergency', 'alert', 'critical', 'error', 'warning', 'notice', 'informational', 'debug',
];

/** 0 for the most severe; unknown severities last. */
export function severityRank(severity) {
  const i = SEVERITIES.indexOf(severity);
  return i < 0 ? SEVERITIES.length : i;
}

export function severityBadge(severity) {
  const known = SEVERITIES.includes(severity) ? severity : 'unknown';
  return h('span', { class: `sev sev-${known}` }, severity);
}

export function formatTime(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

export function ago(iso) {
  if (!iso) return '—';
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (Number.isNaN(seconds)) return String(iso);
  if (seconds < 0) return 'in the future';
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

/** How long until `iso`: "in 6 d", "in 3 h"; "expired" once it has passed. */
export function until(iso) {
  if (!iso) return '—';
  const seconds = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
  if (Number.isNaN(seconds)) return String(iso);
  if (seconds <= 0) return 'expired';
  if (seconds < 3600) return `in ${Math.max(1, Math.floor(seconds / 60))} min`;
  if (seconds < 86400) return `in ${Math.round(seconds / 3600)} h`;
  return `in ${Math.round(seconds / 86400)} d`;
}

/** `datetime-local` value (local time) to RFC 3339, and back. */
export function toRfc3339(local) {
  if (!local) return '';
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? '' : date.toISOString();
}

export function toLocalInput(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

export function number(n) {
  return typeof n === 'number' ? n.toLocaleString() : '—';
}

export function empty(message, hint) {
  return h('div', { class: 'empty' }, h('p', {}, message), hint ? h('p', { class: 'hint' }, hint) : null);
}

export function errorBox(error) {
  return h('div', { class: 'error', role: 'alert' }, error && error.message ? error.message : String(error));
}

export function loading() {
  return h('p', { class: 'loading' }, 'Loading…');
}

/**
 * A table that turns into labelled cards on narrow screens.
 * columns: [{label, cell: row => node|string, class?}]
 */
export function table(columns, rows, { onRowClick, rowClass } = {}) {
  const head = h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label))));
  const body = h('tbody', {});
  for (const row of rows) {
    const tr = h('tr', { class: rowClass ? rowClass(row) : null });
    for (const c of columns) {
      tr.appendChild(h('td', { 'data-label': c.label, class: c.class }, h('div', { class: 'cell' }, c.cell(row))));
    }
    if (onRowClick) {
      tr.classList.add('clickable');
      tr.tabIndex = 0;
      tr.addEventListener('click', (e) => {
        if (e.target.closest('a, button')) return;
        onRowClick(row);
      });
      tr.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') onRowClick(row);
      });
    }
    body.appendChild(tr);
  }
  return h('div', { class: 'table-wrap' }, h('table', { class: 'data' }, head, body));
}

/** A label/value list for detail views. */
export function fieldList(pairs) {
  const dl = h('dl', { class: 'fields' });
  for (const [label, value] of pairs) {
    if (value === undefined || value === null || value === '') continue;
    dl.appendChild(h('dt', {}, label));
    dl.appendChild(h('dd', {}, value));
  }
  return dl;
}

/** Pretty JSON as text. */
export function jsonBlock(value, label) {
  let text;
  try {
    text = JSON.stringify(value, null, 2);
  } catch {
    text = String(value);
  }
  return h('pre', { class: 'json', 'aria-label': label }, text === undefined ? 'null' : text);
}

export function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', {}, title), ...children);
}

export function counter(label, value, cls) {
  return h('div', { class: `counter ${cls || ''}` }, h('span', { class: 'value' }, value), h('span', { class: 'label' }, label));
}
