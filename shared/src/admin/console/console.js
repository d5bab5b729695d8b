// The syncline operator console. Every figure and every action goes through
// the admin JSON API with the token the person signed in with; the token
// lives in this tab's sessionStorage only and never in a URL.
'use strict';
(() => {
  const TOKEN_KEY = 'syncline.admin-token';
  const POLL_MS = 3000;
  const state = { token: null, expiry: null, poll: null, busy: 0, charts: new Map(), route: null };

  // ---- small DOM helpers -------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'on') {
        for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
      } else if (key === 'text') {
        el.textContent = value;
      } else if (key === 'class') {
        el.className = value;
      } else if (key === 'value') {
        el.value = value;
      } else if (key in el && typeof value !== 'string') {
        el[key] = value;
      } else {
        el.setAttribute(key, value === true ? '' : value);
      }
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const $ = (selector) => document.querySelector(selector);

  function badge(value) {
    return h('span', { class: `badge ${value}`, text: value });
  }

  function when(iso) {
    if (!iso) return 'never';
    const at = new Date(iso);
    return Number.isNaN(at.getTime()) ? String(iso) : at.toLocaleString();
  }

  function table(headers, rows, empty) {
    if (rows.length === 0) return h('p', { class: 'muted', text: empty });
    return h('table', {},
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', { class: t.endsWith('#') ? 'num' : '', text: t.replace(/#$/, '') })))),
      h('tbody', {}, rows));
  }

  function notice(kind, text) {
    const box = $('#notice');
    box.className = kind;
    box.textContent = text;
    box.hidden = false;
    box.dataset.kind = kind;
  }

  function clearNotice() {
    $('#notice').hidden = true;
    $('#notice').textContent = '';
  }

  // ---- the API -------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
    describe() {
      return `${this.status} ${this.code}: ${this.message}`;
    }
  }

  async function api(method, path, body, options = {}) {
    const init = { method, cache: 'no-store', headers: { authorization: `Bearer ${state.token}` } };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, 'unreachable', `the admin API did not answer (${err.message})`);
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    const error = data && data.error;
    if (response.status === 401) {
      const why = (error && error.message) || 'the token was refused';
      signOut(`Your session ended: ${why}. Sign in again.`);
      throw new ApiError(401, 'unauthorized', why);
    }
    if (!response.ok && !(options.accept || []).includes(response.status)) {
      throw new ApiError(response.status, (error && error.code) || 'error',
        (error && error.message) || response.statusText);
    }
    return data;
  }

  // An action a person clicked: the API's answer (or its error) is shown.
  async function act(button, describe, run) {
    const buttons = button ? [button] : [];
    buttons.forEach((b) => { b.disabled = true; });
    state.busy += 1;
    try {
      const result = await run();
      notice('info', describe(result));
      await refresh();
      return result;
    } catch (err) {
      if (err instanceof ApiError && err.status !== 401) notice('error', err.describe());
      else if (!(err instanceof ApiError)) notice('error', String(err));
      return null;
    } finally {
      state.busy -= 1;
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  // ---- sign-in -------------------------------------------------------------

  function tokenExpiry(token) {
    try {
      const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const claims = JSON.parse(atob(payload + '='.repeat((4 - (payload.length % 4)) % 4)));
      return typeof claims.exp === 'number' ? claims.exp * 1000 : null;
    } catch (_) {
      return null;
    }
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    clearTimeout(state.expiry);
    clearInterval(state.poll);
    state.poll = null;
    destroyCharts();
    $('#nav').hidden = true;
    $('#sign-out').hidden = true;
    $('#health').hidden = true;
    $('#updated').textContent = '';
    renderSignIn(message);
  }

  function renderSignIn(message) {
    clearNotice();
    const input = h('textarea', { id: 'token', placeholder: 'an admin JWT', autocomplete: 'off', spellcheck: 'false' });
    const error = h('p', { id: 'sign-in-error', class: 'error-text', text: message || '' });
    const submit = h('button', { type: 'submit', class: 'primary', text: 'Sign in' });
    const form = h('form', {
      class: 'signin panel',
      on: {
        submit: async (event) => {
          event.preventDefault();
          submit.disabled = true;
          await signIn(input.value.trim(), error);
          submit.disabled = false;
        },
      },
    },
    h('h2', { text: 'Sign in to the syncline console' }),
    h('p', { class: 'muted', text: 'Paste an admin token (a JWT with the admin scope). It is kept for this tab only and sent to the admin API, nowhere else.' }),
    input, error, submit);
    $('#main').replaceChildren(form);
    input.focus();
  }

  async function signIn(token, errorBox) {
    if (!token) {
      errorBox.textContent = 'Paste a token first.';
      return;
    }
    state.token = token;
    try {
      await fetchJson('/v1/admin/status');
    } catch (err) {
      state.token = null;
      if (err.status === 401) return; // signOut already showed why
      renderSignIn(err.status === 403
        ? 'This token has no admin scope.'
        : `Signing in failed: ${err.describe ? err.describe() : err}`);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    startSession();
  }

  function fetchJson(path) {
    return api('GET', path);
  }

  function startSession() {
    $('#nav').hidden = false;
    $('#sign-out').hidden = false;
    const exp = tokenExpiry(state.token);
    clearTimeout(state.expiry);
    if (exp) {
      state.expiry = setTimeout(() => signOut('Your token expired. Sign in again.'), Math.max(0, exp - Date.now()));
    }
    clearInterval(state.poll);
    state.poll = setInterval(() => {
      if (!document.hidden) refresh({ quiet: true });
    }, POLL_MS);
    if (!location.hash || location.hash === '#') location.hash = '#/overview';
    else refresh();
  }

  // ---- charts (uPlot) ------------------------------------------------------

  const PALETTE = ['#2450b2', '#d9730d', '#176b2c', '#b3261e', '#7a4bc2', '#0f7d86'];

  function destroyCharts() {
    for (const chart of state.charts.values()) chart.plot.destroy();
    state.charts.clear();
  }

  // A chart in `slot` (kept across refreshes while its series stay the same).
  function chart(slot, key, title, labels, data, options = {}) {
    slot.replaceChildren();
    slot.append(h('h3', { text: title }));
    if (data[0].length === 0) {
      const old = state.charts.get(key);
      if (old) { old.plot.destroy(); state.charts.delete(key); }
      slot.append(h('div', { class: 'empty', text: options.empty || 'nothing recorded yet' }));
      return;
    }
    const host = h('div', { class: 'plot', 'data-chart': key, 'data-points': String(data[0].length) });
    slot.append(host);
    const existing = state.charts.get(key);
    if (existing && existing.signature === labels.join('|')) {
      host.append(existing.plot.root);
      existing.plot.setData(data);
      return;
    }
    if (existing) existing.plot.destroy();
    const paths = window.uPlot.paths;
    const drawn = options.bars ? paths.bars({ size: [0.6, 48] })
      : options.stepped ? paths.stepped({ align: 1 }) : undefined;
    const series = [{ label: options.ticks ? 'run' : 'time' }].concat(labels.map((label, i) => ({
      label,
      stroke: PALETTE[i % PALETTE.length],
      width: 2,
      fill: options.bars ? `${PALETTE[i % PALETTE.length]}55` : undefined,
      paths: drawn,
      points: { show: !options.bars && data[0].length < 60 },
    })));
    // Runs are drawn one after another (x = their order), labelled with
    // their start time; samples on a time axis.
    const ticks = options.ticks;
    const x = ticks
      ? { scale: { time: false, range: (u, min, max) => [min - 0.6, max + 0.6] },
        axis: { values: (u, splits) => splits.map((i) => (Number.isInteger(i) && ticks[i] ? ticks[i] : '')) } }
      : { scale: { time: true }, axis: {} };
    if (ticks) series[0].value = (u, i) => (i === null || !ticks[i] ? '--' : ticks[i]);
    const plot = new window.uPlot({
      width: Math.max(320, slot.clientWidth - 16),
      height: 190,
      series,
      scales: { x: x.scale, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [x.axis, { label: options.unit || '' }],
      legend: { show: true },
    }, data, host);
    state.charts.set(key, { plot, signature: labels.join('|') });
  }

  // ---- views ---------------------------------------------------------------

  function parseRoute() {
    const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
    return { view: parts[0] || 'overview', args: parts.slice(1) };
  }

  async function refresh(options = {}) {
    if (!state.token) return;
    const route = parseRoute();
    const view = VIEWS[route.view] || VIEWS.overview;
    document.querySelectorAll('nav a').forEach((a) => {
      a.classList.toggle('current', a.dataset.view === (route.view === 'source' ? 'overview' : route.view));
    });
    const focused = document.activeElement;
    // A poll never replaces a form a person is typing in.
    if (options.quiet && (state.busy > 0 || (focused && $('#main').contains(focused) && focused.matches('input, textarea, select')))) {
      return;
    }
    const changedView = state.route !== location.hash;
    try {
      const [health, content] = await Promise.all([
        api('GET', '/v1/admin/health', undefined, { accept: [503] }),
        view(route.args),
      ]);
      if (!state.token) return;
      if (changedView) destroyCharts();
      state.route = location.hash;
      renderHealth(health);
      $('#main').replaceChildren(...content.nodes);
      content.after && content.after();
      $('#updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
      $('#updated').dataset.at = String(Date.now());
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      notice('error', err instanceof ApiError ? err.describe() : String(err));
    }
  }

  function renderHealth(health) {
    const box = $('#health');
    box.hidden = false;
    box.className = `badge ${health.health}`;
    box.textContent = health.health;
    box.title = (health.reasons || []).join('; ');
  }

  async function overview() {
    const [health, status, destinations, history] = await Promise.all([
      api('GET', '/v1/admin/health', undefined, { accept: [503] }),
      api('GET', '/v1/admin/status'),
      api('GET', '/v1/admin/destinations'),
      api('GET', '/v1/admin/history?hours=24'),
    ]);
    const reasons = [...(health.reasons || [])];
    for (const source of health.sources || []) {
      for (const why of source.reasons || []) reasons.push(`${source.source}: ${why}`);
    }
    const nodes = [
      h('section', { class: 'panel', id: 'overall' },
        h('h2', {}, 'Health ', badge(health.health)),
        reasons.length
          ? h('ul', { class: 'reasons' }, reasons.map((r) => h('li', { text: r })))
          : h('p', { class: 'muted', text: 'Every source ran on time, nothing waits in the dead-letter queue, every destination keeps up.' })),
      h('h2', { text: 'Sources' }),
      table(['source', 'enabled', 'interval', 'last run', 'next due', 'health', 'controls'],
        status.sources.map(sourceRow), 'No REST sources are configured.'),
      h('h2', { text: 'Destinations' }),
      table(['destination', 'kind', 'enabled', 'lag#', 'failures#', 'note', 'controls'],
        destinations.destinations.map(destinationRow), 'No destinations are configured.'),
      h('h2', { text: 'Over the last 24 hours' }),
    ];
    const slots = ['dead', 'lag', 'failures'].map((k) => h('div', { class: 'chart', id: `chart-${k}` }));
    nodes.push(h('div', { class: 'charts' }, slots));
    const samples = history.samples || [];
    const xs = samples.map((s) => Date.parse(s.at) / 1000);
    const names = [...new Set(samples.flatMap((s) => s.destinations.map((d) => d.destination)))];
    const per = (field) => names.map((name) => samples.map((s) => {
      const d = s.destinations.find((x) => x.destination === name);
      return d ? d[field] : null;
    }));
    return {
      nodes,
      after: () => {
        chart(slots[0], 'dead', 'Dead letters waiting', ['dead letters'], [xs, samples.map((s) => s.dead_letters)], { stepped: true });
        chart(slots[1], 'lag', 'Delivery lag (changes behind)', names, [xs, ...per('lag')],
          { stepped: true, empty: names.length ? undefined : 'no destinations' });
        chart(slots[2], 'failures', 'Delivery failures in a row', names, [xs, ...per('failures')],
          { stepped: true, empty: names.length ? undefined : 'no destinations' });
      },
    };
  }

  function sync(source, kind, button) {
    const body = kind ? { source, kind } : { source };
    return act(button, (r) => `Queued a ${kind || 'sync'} run of ${source} (message ${r.message_id}).`,
      () => api('POST', '/v1/admin/sync', body));
  }

  function settings(source, change, button) {
    return act(button, () => `Changed ${source}: ${Object.entries(change).map(([k, v]) => `${k} = ${v}`).join(', ')}.`,
      () => api('PUT', '/v1/admin/settings', { source, ...change }));
  }

  function sourceRow(s) {
    const run = s.last_run;
    const last = run
      ? h('span', {}, badge(run.status), ` ${when(run.started_at)} · ${run.counts.seen} seen, ${run.counts.created + run.counts.updated + run.counts.deleted} written`,
        run.error ? h('div', { class: 'error-text', text: run.error }) : null)
      : 'none';
    const interval = h('input', { class: 'interval', value: s.interval, 'aria-label': `interval of ${s.source}` });
    const row = h('tr', { 'data-source': s.source },
      h('td', {}, h('a', { href: `#/source/${encodeURIComponent(s.source)}`, text: s.source })),
      h('td', {}, badge(s.enabled ? 'on' : 'off')),
      h('td', {}, interval),
      h('td', {}, last),
      h('td', { text: when(s.next_due) }),
      h('td', {}, badge(s.health), s.reasons.length ? h('div', { class: 'muted', text: s.reasons.join('; ') }) : null),
      h('td', { class: 'actions' },
        h('button', { type: 'button', 'data-action': 'sync', text: 'Sync now', on: { click: (e) => sync(s.source, null, e.target) } }),
        h('button', { type: 'button', 'data-action': 'full', text: 'Full sync', on: { click: (e) => sync(s.source, 'full', e.target) } }),
        h('button', { type: 'button', 'data-action': 'toggle', text: s.enabled ? 'Disable' : 'Enable', on: { click: (e) => settings(s.source, { enabled: !s.enabled }, e.target) } }),
        h('button', { type: 'button', 'data-action': 'interval', text: 'Set interval', on: { click: (e) => settings(s.source, { interval: interval.value.trim() }, e.target) } })));
    return row;
  }

  function destinationRow(d) {
    const name = encodeURIComponent(d.destination);
    return h('tr', { 'data-destination': d.destination },
      h('td', { text: d.destination }),
      h('td', { text: d.kind }),
      h('td', {}, badge(d.enabled ? 'on' : 'off')),
      h('td', { class: 'num', text: d.lag }),
      h('td', { class: 'num', text: d.consecutive_failures }),
      h('td', { class: 'muted', text: d.disabled_reason || '' }),
      h('td', { class: 'actions' },
        h('button', {
          type: 'button',
          'data-action': 'toggle',
          text: d.enabled ? 'Disable' : 'Enable',
          on: {
            click: (e) => act(e.target, () => `${d.enabled ? 'Disabled' : 'Enabled'} ${d.destination}.`,
              () => api('POST', `/v1/admin/destinations/${name}/${d.enabled ? 'disable' : 'enable'}`)),
          },
        })));
  }

  async function sourceView(args) {
    const source = args[0];
    const [status, runs] = await Promise.all([
      api('GET', '/v1/admin/status'),
      api('GET', `/v1/admin/runs?source=${encodeURIComponent(source)}&limit=50`),
    ]);
    const s = status.sources.find((x) => x.source === source);
    if (!s) throw new ApiError(404, 'not_found', `source ${source} is not configured`);
    const ordered = [...runs.runs].reverse();
    const xs = ordered.map((r, i) => i);
    const ticks = ordered.map((r) => new Date(r.started_at).toLocaleTimeString());
    const seconds = ordered.map((r) => (r.finished_at ? (Date.parse(r.finished_at) - Date.parse(r.started_at)) / 1000 : null));
    const seen = ordered.map((r) => r.counts.seen);
    const written = ordered.map((r) => r.counts.created + r.counts.updated + r.counts.deleted);
    const slots = [h('div', { class: 'chart', id: 'chart-duration' }), h('div', { class: 'chart', id: 'chart-records' })];
    const duration = (r) => (r.finished_at ? `${((Date.parse(r.finished_at) - Date.parse(r.started_at)) / 1000).toFixed(2)} s` : '…');
    return {
      nodes: [
        h('h2', {}, `Source ${source} `, badge(s.health)),
        table(['source', 'enabled', 'interval', 'last run', 'next due', 'health', 'controls'], [sourceRow(s)], ''),
        h('div', { class: 'charts' }, slots),
        h('h2', { text: 'Runs, newest first' }),
        table(['started', 'kind', 'trigger', 'status', 'duration#', 'seen#', 'created#', 'updated#', 'deleted#', 'failed#', 'error'],
          runs.runs.map((r) => h('tr', { 'data-run': r.id, 'data-status': r.status },
            h('td', { text: when(r.started_at) }), h('td', { text: r.kind }), h('td', { text: r.trigger }),
            h('td', {}, badge(r.status)), h('td', { class: 'num', text: duration(r) }),
            h('td', { class: 'num', text: r.counts.seen }), h('td', { class: 'num', text: r.counts.created }),
            h('td', { class: 'num', text: r.counts.updated }), h('td', { class: 'num', text: r.counts.deleted }),
            h('td', { class: 'num', text: r.counts.failed }), h('td', { class: 'error-text', text: r.error || '' }))),
          'No runs yet.'),
      ],
      after: () => {
        chart(slots[0], `duration-${source}`, 'Run duration, oldest to newest', ['seconds'], [xs, seconds], { unit: 's', bars: true, ticks });
        chart(slots[1], `records-${source}`, 'Records per run', ['seen', 'written'], [xs, seen, written], { ticks });
      },
    };
  }

  async function deadLetters() {
    const data = await api('GET', '/v1/admin/dead-letters');
    const letters = data.dead_letters;
    const redrive = (ids, button) => act(button, (r) => `Moved ${r.moved} dead letter(s) back onto the retry queue.`,
      () => api('POST', '/v1/admin/dead-letters/redrive', ids ? { ids } : {}));
    return {
      nodes: [
        h('h2', { text: `Dead letters (${letters.length})` }),
        h('p', { class: 'muted', text: 'Work that failed every attempt. Redrive puts it back on the retry queue with its attempts reset.' }),
        letters.length ? h('button', { type: 'button', id: 'redrive-all', text: 'Redrive all', on: { click: (e) => redrive(null, e.target) } }) : null,
        table(['kind', 'source', 'key', 'attempts#', 'error', 'first failed', ''],
          letters.map((l) => h('tr', { 'data-letter': l.id },
            h('td', { text: l.kind }), h('td', { text: l.source || '' }), h('td', { class: 'ids', text: l.idempotency_key || '' }),
            h('td', { class: 'num', text: l.attempts ?? '' }), h('td', { class: 'error-text', text: l.error || '' }),
            h('td', { text: when(l.first_failed_at) }),
            h('td', { class: 'actions' }, h('button', { type: 'button', 'data-action': 'redrive', text: 'Redrive', on: { click: (e) => redrive([l.id], e.target) } })))),
          'No dead letters: every piece of failed work was finished or is still being retried.'),
      ],
    };
  }

  function pretty(value) {
    return value === undefined || value === null ? '—' : JSON.stringify(value, null, 2);
  }

  function conflictCard(c) {
    const mutation = c.mutation || {};
    const server = (c.current && !c.current.deleted) ? c.current.data : null;
    const base = mutation.base || null;
    const client = mutation.data || null;
    const fields = [...new Set([server, base, client].filter(Boolean).flatMap((o) => Object.keys(o)))].sort();
    const show = (o, f) => (o && f in o ? JSON.stringify(o[f]) : '—');
    const rows = fields.map((f) => h('tr', { class: show(server, f) !== show(client, f) && client && f in client ? 'differs' : '' },
      h('th', { text: f }), h('td', { text: show(base, f) }), h('td', { text: show(server, f) }), h('td', { text: show(client, f) })));
    const custom = h('textarea', { rows: 6, 'aria-label': 'custom content', value: JSON.stringify({ ...(server || {}), ...(client || {}) }, null, 2) });
    const resolve = (resolution, button, data) => act(button,
      () => `Resolved conflict ${c.id}: ${resolution === 'server' ? 'kept the server\'s record' : resolution === 'client' ? 'applied the client\'s change' : 'wrote the custom content'}.`,
      () => api('POST', `/v1/admin/conflicts/${encodeURIComponent(c.id)}/resolve`, data === undefined ? { resolution } : { resolution, data }));
    return h('section', { class: 'panel', 'data-conflict': c.id },
      h('h3', { text: `${c.entity}/${c.record_id}` }),
      h('p', { class: 'muted', text: `client ${c.client_id} · ${mutation.op} based on version ${mutation.base_version ?? 'none'} · server at version ${c.current ? c.current.version : 'none'} · raised ${when(c.created_at)}` }),
      table(['field', 'base (what the client started from)', 'server now', "client's change"], rows, 'No fields.'),
      h('div', { class: 'sides' },
        h('div', {}, h('h3', { text: 'Base' }), h('pre', { text: base ? pretty(base) : `version ${mutation.base_version ?? 'none'} (the client sent no content)` })),
        h('div', {}, h('h3', { text: 'Server now' }), h('pre', { text: pretty(server) })),
        h('div', {}, h('h3', { text: "Client's change" }), h('pre', { text: pretty(client) }))),
      h('p', {},
        h('button', { type: 'button', 'data-action': 'server', text: "Keep the server's", on: { click: (e) => resolve('server', e.target) } }),
        h('button', { type: 'button', 'data-action': 'client', class: 'primary', text: "Take the client's", on: { click: (e) => resolve('client', e.target) } })),
      h('details', {}, h('summary', { text: 'Write other content' }), custom,
        h('button', {
          type: 'button',
          'data-action': 'custom',
          text: 'Resolve with this content',
          on: {
            click: (e) => {
              let data;
              try {
                data = JSON.parse(custom.value);
              } catch (err) {
                notice('error', `The custom content is not JSON: ${err.message}`);
                return;
              }
              resolve('custom', e.target, data);
            },
          },
        })));
  }

  async function conflicts() {
    const data = await api('GET', '/v1/admin/conflicts');
    return {
      nodes: [
        h('h2', { text: `Open conflicts (${data.conflicts.length})` }),
        h('p', { class: 'muted', text: 'Changes from clients that met a newer server version of an entity type resolved by hand.' }),
        ...(data.conflicts.length ? data.conflicts.map(conflictCard) : [h('p', { class: 'muted', text: 'No open conflicts.' })]),
      ],
    };
  }

  function ids(label, list, total) {
    if (!total) return null;
    return h('div', {}, h('b', { text: `${label} ${total}: ` }), h('span', { class: 'ids', text: list.join(', ') + (total > list.length ? ' …' : '') }));
  }

  async function discrepancies() {
    const [status, data] = await Promise.all([api('GET', '/v1/admin/status'), api('GET', '/v1/admin/discrepancies')]);
    const check = (source, repair, button) => act(button,
      (r) => `Checked ${source}: ${r.missing_total} missing, ${r.extra_total} extra, ${r.stale_total} stale${repair ? '; repairs queued' : ''}.`,
      () => api('POST', `/v1/admin/discrepancies/${encodeURIComponent(source)}`, { repair }));
    return {
      nodes: [
        h('h2', { text: 'Check a source against the store' }),
        table(['source', ''], status.sources.map((s) => h('tr', { 'data-source': s.source }, h('td', { text: s.source }),
          h('td', { class: 'actions' },
            h('button', { type: 'button', 'data-action': 'check', text: 'Check', on: { click: (e) => check(s.source, false, e.target) } }),
            h('button', { type: 'button', 'data-action': 'repair', class: 'primary', text: 'Check and repair', on: { click: (e) => check(s.source, true, e.target) } })))),
        'No REST sources are configured.'),
        h('h2', { text: 'Reports, newest first' }),
        table(['at', 'source', 'source count#', 'store count#', 'differences', ''],
          data.reports.map((r) => h('tr', { 'data-report': r.id },
            h('td', { text: when(r.at) }), h('td', { text: r.source }),
            h('td', { class: 'num', text: r.source_count }), h('td', { class: 'num', text: r.store_count }),
            h('td', {}, (r.missing_total + r.extra_total + r.stale_total) === 0 ? h('span', { class: 'muted', text: 'none' }) : null,
              ids('missing', r.missing, r.missing_total), ids('extra', r.extra, r.extra_total), ids('stale', r.stale, r.stale_total)),
            h('td', { class: 'actions' }, (r.missing_total + r.extra_total + r.stale_total) > 0
              ? h('button', { type: 'button', 'data-action': 'repair', text: 'Repair', on: { click: (e) => check(r.source, true, e.target) } })
              : null))),
          'No reports yet.'),
      ],
    };
  }

  async function trail(args) {
    const [entity, id] = args;
    const entityInput = h('input', { name: 'entity', placeholder: 'entity type', value: entity || '', 'aria-label': 'entity type' });
    const idInput = h('input', { name: 'id', placeholder: 'record id', value: id || '', 'aria-label': 'record id' });
    const form = h('form', {
      class: 'inline panel',
      on: {
        submit: (event) => {
          event.preventDefault();
          location.hash = `#/trail/${encodeURIComponent(entityInput.value.trim())}/${encodeURIComponent(idInput.value.trim())}`;
        },
      },
    }, entityInput, idInput, h('button', { type: 'submit', class: 'primary', text: 'Show' }));
    const nodes = [h('h2', { text: "A record's change trail" }), form];
    if (!entity || !id) return { nodes };
    const path = `${encodeURIComponent(entity)}/${encodeURIComponent(id)}`;
    const [record, changes] = await Promise.all([
      api('GET', `/v1/admin/records/${path}`).catch((err) => {
        if (err.status === 404) return null;
        throw err;
      }),
      api('GET', `/v1/admin/changes?entity=${encodeURIComponent(entity)}&id=${encodeURIComponent(id)}&limit=100`),
    ]);
    nodes.push(h('h3', { text: record ? `Now: version ${record.version}${record.deleted ? ' (deleted)' : ''}, ${when(record.updated_at)}` : 'Not in the store' }));
    if (record) nodes.push(h('pre', { class: 'panel', id: 'record', text: pretty(record.data) }));
    const mine = (c) => c.changes.find((x) => x.entity === entity && x.id === id) || {};
    nodes.push(table(['at', 'by way of', 'who', 'reference', 'version#', ''],
      changes.changes.map((c) => h('tr', { 'data-version': String(mine(c).version) },
        h('td', { text: when(c.at) }), h('td', { text: c.via }), h('td', { text: c.actor }), h('td', { class: 'ids', text: c.reference }),
        h('td', { class: 'num', text: mine(c).version }), h('td', { text: mine(c).deleted ? 'deleted' : '' }))),
      'No changes recorded for this record.'));
    return { nodes };
  }

  const VIEWS = {
    overview,
    source: sourceView,
    'dead-letters': deadLetters,
    conflicts,
    discrepancies,
    trail,
  };

  // ---- start ---------------------------------------------------------------

  function start() {
    $('#sign-out').addEventListener('click', () => signOut('Signed out.'));
    window.addEventListener('hashchange', () => {
      clearNotice();
      refresh();
    });
    // A signed link: `#token=...`, taken and removed from the address bar
    // (and from history) before anything else runs.
    const linked = /^#token=([^&]+)/.exec(location.hash);
    if (linked) {
      history.replaceState(null, '', `${location.pathname}${location.search}#/overview`);
      const box = { textContent: '' };
      signIn(decodeURIComponent(linked[1]), box);
      return;
    }
    const kept = sessionStorage.getItem(TOKEN_KEY);
    if (kept) {
      state.token = kept;
      startSession();
    } else {
      renderSignIn();
    }
  }

  start();
})();
