// Consumers: delivery state of each consumer, its dead letters with replay, and a test send.

import { api, withQuery } from './api.js';
import { handleError } from './app.js';
import {
  ago, empty, formatTime, h, loading, number, replace, table,
} from './dom.js';

export async function renderConsumers(view, params, signal) {
  const refresh = h('button', { type: 'button', id: 'refresh' }, 'Refresh');
  const list = h('div', { id: 'consumers' }, loading());
  view.append(h('div', { class: 'title-row' }, h('h1', {}, 'Consumers'), refresh), list);
  const load = async () => {
    const { consumers } = await api('/api/v1/consumers');
    if (signal.aborted) return;
    if (!consumers.length) {
      replace(list, empty('No consumers are declared.', 'Declare them under `consumers:` in the configuration file, or in a Setting (see docs/delivery.md).'));
      return;
    }
    replace(list, ...consumers.map((c) => consumerCard(c, signal)));
  };
  refresh.addEventListener('click', () => load().catch((e) => handleError(e, list)));
  await load();
}

function stateClass(state) {
  return `state state-${String(state).toLowerCase().replace(/[^a-z]/g, '')}`;
}

function consumerCard(c, signal) {
  const result = h('p', { class: 'status test-result', 'aria-live': 'polite' });
  const testButton = h('button', { type: 'button', class: 'test' }, 'Send test event');
  testButton.addEventListener('click', async () => {
    testButton.disabled = true;
    replace(result, 'Sending…');
    try {
      const answer = await api(`/api/v1/consumers/${encodeURIComponent(c.name)}/test`, { method: 'POST' });
      replace(result, h('span', { class: answer.delivered ? 'ok' : 'bad' },
        answer.delivered ? 'Test event delivered.' : `Test event not delivered: ${answer.detail}`));
    } catch (e) {
      handleError(e, result);
    }
    testButton.disabled = false;
  });
  const letters = h('div', { class: 'dead-letters' });
  const card = h('section', { class: 'card consumer', 'data-consumer': c.name },
    h('div', { class: 'title-row' },
      h('h2', {}, c.name, ' ', h('span', { class: 'type' }, c.type)),
      h('span', { class: stateClass(c.state) }, c.state)),
    h('div', { class: 'counters' },
      h('div', { class: 'counter' }, h('span', { class: 'value lag' }, number(c.lag_events)), h('span', { class: 'label' }, `lag (events), ${number(c.lag_seconds)} s`)),
      h('div', { class: 'counter' }, h('span', { class: 'value delivered' }, number(c.delivered)), h('span', { class: 'label' }, 'delivered')),
      h('div', { class: 'counter' }, h('span', { class: 'value retries' }, number(c.retries)), h('span', { class: 'label' }, 'retries')),
      h('div', { class: 'counter' }, h('span', { class: 'value dead' }, number(c.dead_letters)), h('span', { class: 'label' }, 'dead letters'))),
    h('p', { class: 'hint' }, `Declared in ${c.origin}. Last delivery ${c.last_delivered_at ? `${ago(c.last_delivered_at)} (${formatTime(c.last_delivered_at)})` : 'never'}.`),
    c.last_error ? h('p', { class: 'error last-error' }, 'Last error: ', c.last_error) : null,
    h('div', { class: 'actions' }, testButton, result),
    letters);
  loadDeadLetters(c, letters, signal).catch((e) => handleError(e, letters));
  return card;
}

async function loadDeadLetters(c, target, signal) {
  const { dead_letters: items, next_after: more } = await api(withQuery(`/api/v1/consumers/${encodeURIComponent(c.name)}/dead-letters`, { limit: 50 }));
  if (signal.aborted) return;
  if (!items.length) {
    replace(target, h('p', { class: 'hint' }, 'No dead letters.'));
    return;
  }
  const status = h('p', { class: 'status replay-result', 'aria-live': 'polite' });
  const replay = async (ids, button) => {
    button.disabled = true;
    try {
      const answer = await api(`/api/v1/consumers/${encodeURIComponent(c.name)}/dead-letters/replay`, {
        method: 'POST', body: ids ? { ids } : {},
      });
      replace(status, `Replay requested for ${number(answer.requested)} dead letter${answer.requested === 1 ? '' : 's'}; the consumer sends them next.`);
    } catch (e) {
      handleError(e, status);
    }
    button.disabled = false;
  };
  const all = h('button', { type: 'button', class: 'replay-all' }, 'Replay all');
  all.addEventListener('click', () => replay(null, all));
  replace(target,
    h('h3', {}, 'Dead letters'),
    table([
      { label: 'Id', cell: (d) => String(d.id) },
      { label: 'Event', cell: (d) => h('a', { href: `#/events/${encodeURIComponent(d.event_id)}` }, d.event_id.slice(0, 13) + '…') },
      { label: 'Reason', cell: (d) => h('span', { class: 'message' }, d.reason), class: 'wide' },
      { label: 'Attempts', cell: (d) => number(d.attempts) },
      { label: 'Since', cell: (d) => formatTime(d.created_at) },
      { label: 'Replay', cell: (d) => {
        if (d.replay_requested) return 'requested';
        const b = h('button', { type: 'button', class: 'replay-one' }, 'Replay');
        b.addEventListener('click', () => replay([d.id], b));
        return b;
      } },
    ], items, { rowClass: () => 'dead-letter-row' }),
    more ? h('p', { class: 'hint' }, 'The 50 oldest are shown.') : null,
    h('div', { class: 'actions' }, all, status));
}

