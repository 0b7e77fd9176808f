// The dashboard's shell: hash routes (#/page/…?filters), the login form shown whenever the
// API answers 401, and one render function per page.

import { AuthRequired, clearToken, setToken, token } from './api.js';
import { errorBox, h, replace } from './dom.js';
import { renderOverview } from './overview.js';
import { renderEvents, renderEvent } from './events.js';
import { renderFindings } from './findings.js';
import { renderConsumers } from './consumers.js';
import { renderClusters } from './clusters.js';
import { renderAlerts, renderGroup } from './alerts.js';
import { renderSuppressions } from './suppressions.js';

const main = document.getElementById('main');
const logout = document.getElementById('logout');

const PAGES = {
  overview: { title: 'Overview', render: renderOverview },
  alerts: { title: 'Alerts', render: renderAlerts },
  events: { title: 'Events', render: renderEvents },
  suppressions: { title: 'Suppressions', render: renderSuppressions },
  findings: { title: 'Findings', render: renderFindings },
  consumers: { title: 'Consumers', render: renderConsumers },
  clusters: { title: 'Clusters', render: renderClusters },
};

/** Parses `#/events/ID?severity=warning` into {page, id, params}. */
export function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query] = hash.split('?');
  const [page, ...rest] = path.split('/');
  return {
    page: PAGES[page] ? page : 'overview',
    id: rest.length ? decodeURIComponent(rest.join('/')) : null,
    params: new URLSearchParams(query || ''),
  };
}

/** Changes the route's filters without adding a history entry per keystroke. */
export function setParams(page, params) {
  const text = new URLSearchParams(
    Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ''),
  ).toString();
  const target = `#/${page}${text ? `?${text}` : ''}`;
  if (location.hash !== target) history.replaceState(null, '', target);
}

// Every render gets a fresh `signal`; a page's timers and late answers stop when the visitor
// moves on.
let current = null;

async function render() {
  if (current) current.abort();
  const controller = new AbortController();
  current = controller;
  const { page, id, params } = route();
  for (const link of document.querySelectorAll('#nav a')) {
    link.classList.toggle('active', link.dataset.page === page);
    if (link.dataset.page === page) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  logout.hidden = !token();
  document.title = `${PAGES[page].title} · Falconer`;
  // A page's dialog (a comment for a state change) does not outlive the page.
  for (const dialog of document.querySelectorAll('body > dialog')) dialog.remove();
  const view = h('div', { class: 'page', 'data-page': page });
  replace(main, view);
  try {
    if (page === 'events' && id) await renderEvent(view, id, controller.signal);
    else if (page === 'alerts' && id) await renderGroup(view, id, controller.signal);
    else await PAGES[page].render(view, params, controller.signal);
  } catch (e) {
    if (controller.signal.aborted) return;
    if (e instanceof AuthRequired) showLogin(e.message);
    else replace(view, errorBox(e));
  }
}

/** Shown instead of the page when the API wants a token; the page renders again after. */
export function showLogin(message) {
  if (current) current.abort();
  const input = h('input', {
    id: 'token', name: 'token', type: 'password', autocomplete: 'current-password',
    required: true, placeholder: 'query token',
  });
  const form = h('form', { class: 'login card', onsubmit: (e) => {
    e.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    setToken(value);
    render();
  } },
  h('h1', {}, 'Sign in'),
  h('p', { class: 'error', role: 'alert' }, message),
  h('p', { class: 'hint' }, 'Enter a query token of this hub (auth.query_token_sha256). It is kept in this tab only (sessionStorage) and sent as a bearer token.'),
  h('label', { for: 'token' }, 'Token'),
  input,
  h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  replace(main, form);
  logout.hidden = true;
  input.focus();
}

/** For pages' own late failures (polling, buttons). */
export function handleError(e, target) {
  if (e instanceof AuthRequired) showLogin(e.message);
  else if (target) replace(target, errorBox(e));
}

logout.addEventListener('click', () => {
  clearToken();
  render();
});
window.addEventListener('hashchange', render);
render();
