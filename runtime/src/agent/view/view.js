// Faultline's live execution view (served by the agent, see runtime/src/agent/view.rs).
//
// The page holds no data: it asks the agent's API for it with the viewer's token as a bearer
// header, and reads the event stream with fetch (EventSource cannot send headers). Every
// string from the API goes into the page with textContent or setAttribute, never as markup.
'use strict';

(() => {
  const TOKEN_KEY = 'faultline.token';
  const SVG_NS = 'http://www.w3.org/2000/svg';

  // The timeline's geometry: the HTML report's (experiment/report/timeline.rs).
  const WIDTH = 1100;
  const X0 = 200;
  const X1 = 1084;
  const AXIS = 28;
  const ROW = 28;
  const BAR = 16;
  const THIN = 10;
  const MARK_R = 5;
  const LABEL = 26;
  const MAX_MARKS = 2000;

  // Bounds on what the page keeps and shows.
  const MAX_NAME = 256;
  const MAX_MESSAGE = 4096;
  const MAX_TOKEN = 4096;
  const MAX_LOG_KEPT = 5000;
  const MAX_LOG_SHOWN = 500;
  const MAX_EVENT_CHARS = 8 * 1024 * 1024;
  const MAX_ERROR_BODY = 64 * 1024;
  const ID = /^[0-9A-Za-z]{1,64}$/;

  // Live timing: the marker moves every tick; a stream silent for longer than the idle limit
  // (the agent sends a keep-alive every 15 s) is dropped and opened again, with backoff.
  const TICK_MS = 250;
  const IDLE_MS = 45000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 15000;
  const LIST_REFRESH_MS = 5000;

  const $ = (id) => document.getElementById(id);

  /** An HTML element with attributes and, when given, text. */
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  /** An SVG element with attributes and, when given, text. */
  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  /** `value` as a string of at most `max` characters, saying how much was left off. */
  function clip(value, max) {
    const s = value === undefined || value === null ? '' : String(value);
    return s.length > max ? s.slice(0, max) + '… (' + (s.length - max) + ' more characters)' : s;
  }

  /** `word` as a class token: letters, digits and '-', lowercased; 'other' when none is left. */
  function token(word) {
    const t = String(word === undefined || word === null ? '' : word)
      .slice(0, 32)
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, '-');
    return /[a-z0-9]/.test(t) ? t : 'other';
  }

  const isTime = (t) => typeof t === 'number' && Number.isFinite(t) && t >= 0;
  const list = (v) => (Array.isArray(v) ? v : []);

  /** An offset from the start for people: `+12.345 s`, or `—`. */
  function offset(t0, at) {
    if (!isTime(at)) return '—';
    const d = (at - t0) / 1000;
    return (d >= 0 ? '+' : '-') + Math.abs(d).toFixed(3) + ' s';
  }

  /** A duration for people: `850 ms`, `12.3 s`, `4 m 05 s`, `2 h 03 m 09 s`. */
  function duration(ms) {
    ms = Math.max(0, Math.floor(ms));
    if (ms < 1000) return ms + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(1) + ' s';
    const s = Math.floor(ms / 1000);
    const two = (n) => String(n).padStart(2, '0');
    if (s < 3600) return Math.floor(s / 60) + ' m ' + two(s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + two(Math.floor(s / 60) % 60) + ' m ' + two(s % 60) + ' s';
  }

  function rfc3339(ms) {
    if (!isTime(ms)) return '—';
    const d = new Date(ms);
    return Number.isNaN(d.getTime()) ? ms + ' ms since the epoch' : d.toISOString();
  }

  // The time axis: the report's steps (experiment/report/time.rs): 1, 2 or 5 times a power
  // of ten milliseconds, the smallest giving at most ten ticks.
  function tickStep(span) {
    for (let power = 1; power < 1e15; power *= 10) {
      for (const mult of [1, 2, 5]) {
        if (Math.floor(span / (power * mult)) <= 10) return power * mult;
      }
    }
    return Math.max(span, 1);
  }

  function tickLabel(ms, step) {
    if (step < 1000) {
      const decimals = step >= 100 ? 1 : step >= 10 ? 2 : 3;
      return (ms / 1000).toFixed(decimals) + 's';
    }
    const s = Math.floor(ms / 1000);
    const two = (n) => String(n).padStart(2, '0');
    if (s < 60) return s + 's';
    if (s < 3600) return s % 60 === 0 ? s / 60 + 'm' : Math.floor(s / 60) + 'm' + two(s % 60) + 's';
    return Math.floor(s / 3600) + 'h' + two(Math.floor(s / 60) % 60) + 'm';
  }

  // While a run is live its end is unknown: the timeline spans the next of these lengths
  // past what has happened, so its scale changes seldom.
  const SPANS = [10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1200, 1800, 2700, 3600]
    .map((s) => s * 1000);
  function liveSpan(elapsed) {
    const want = elapsed * 1.1 + 1000;
    for (const s of SPANS) if (s >= want) return s;
    return Math.ceil(want / 3600000) * 3600000;
  }

  // ---- The token ------------------------------------------------------------------------

  function storage(fn) {
    try {
      return fn(window.sessionStorage);
    } catch (_) {
      return null;
    }
  }

  /** The token from `#token=...` (then removed from the address bar) or the tab's storage. */
  function takeToken() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    const given = fragment.get('token');
    if (given !== null) {
      fragment.delete('token');
      const rest = fragment.toString();
      history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''));
      // A link must not silently swap the token this tab already uses for another (someone
      // else's link could make the operator watch what that token sees): ask first.
      const stored = storage((s) => s.getItem(TOKEN_KEY));
      const replace =
        !stored ||
        stored === given ||
        window.confirm('This link carries a different token than the one this tab uses. Use the link\'s token?');
      if (given && replace) storage((s) => s.setItem(TOKEN_KEY, given));
    }
    return storage((s) => s.getItem(TOKEN_KEY));
  }

  function validToken(t) {
    return typeof t === 'string' && t.length > 0 && t.length <= MAX_TOKEN && /^[\x21-\x7e]+$/.test(t);
  }

  /** Shows the form that asks for a token; `then` runs with the token once one is given. */
  function askToken(then) {
    const form = $('token-form');
    const input = $('token-input');
    form.hidden = false;
    input.value = '';
    input.focus();
    form.onsubmit = (event) => {
      event.preventDefault();
      const t = input.value.trim();
      if (!validToken(t)) {
        problem(null, 'a token is 1 to ' + MAX_TOKEN + ' printable ASCII characters without spaces');
        return;
      }
      storage((s) => s.setItem(TOKEN_KEY, t));
      form.hidden = true;
      clearProblem();
      then(t);
    };
  }

  // ---- Talking to the API ---------------------------------------------------------------

  class HttpError extends Error {
    constructor(status, reason) {
      super(reason);
      this.status = status;
    }
  }

  /** Up to MAX_ERROR_BODY characters of an error answer. */
  async function boundedText(response) {
    if (!response.body) return '';
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let text = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      if (text.length > MAX_ERROR_BODY) {
        reader.cancel().catch(() => {});
        break;
      }
    }
    return text.slice(0, MAX_ERROR_BODY);
  }

  /** The reason an error answer gives (`{"error": ...}`), else its status line. */
  async function reasonOf(response) {
    let text = '';
    try {
      text = await boundedText(response);
      const body = JSON.parse(text);
      if (body && typeof body.error === 'string') return clip(body.error, MAX_MESSAGE);
    } catch (_) {
      // Not JSON: the status line says enough.
    }
    return (response.status + ' ' + (response.statusText || '')).trim();
  }

  async function call(path, tokenValue, accept, signal) {
    let response;
    try {
      response = await fetch(path, {
        headers: { 'Authorization': 'Bearer ' + tokenValue, 'Accept': accept },
        cache: 'no-store',
        credentials: 'omit',
        redirect: 'error',
        signal,
      });
    } catch (e) {
      if (e && e.name === 'AbortError') throw e;
      throw new HttpError(0, 'the agent did not answer: ' + clip(e && e.message, MAX_NAME));
    }
    if (!response.ok) throw new HttpError(response.status, await reasonOf(response));
    clock.sawDate(response.headers.get('Date'));
    return response;
  }

  async function callJson(path, tokenValue) {
    const response = await call(path, tokenValue, 'application/json');
    const text = await response.text();
    try {
      return JSON.parse(text);
    } catch (_) {
      throw new HttpError(response.status, 'the agent answered ' + path + ' with something that is not JSON');
    }
  }

  // ---- What the page says about itself ---------------------------------------------------

  function connection(state, text) {
    const c = $('connection');
    c.setAttribute('data-state', state);
    c.textContent = text || state;
  }

  /** Shows why something failed; `status` is the HTTP status, or null for the page's own. */
  function problem(status, reason) {
    const p = $('problem');
    p.hidden = false;
    p.setAttribute('data-status', status === null ? '' : String(status));
    const word = {
      401: '401 Unauthorized: ',
      403: '403 Forbidden: ',
      404: '404 Not Found: ',
    }[status];
    p.textContent = (word || (status ? status + ': ' : '')) + clip(reason, MAX_MESSAGE);
  }

  function clearProblem() {
    const p = $('problem');
    p.hidden = true;
    p.textContent = '';
    p.removeAttribute('data-status');
  }

  /** 401/403: the token cannot see this; say why and ask for another. */
  function denied(e, retry) {
    problem(e.status, e.message);
    connection('denied', e.status === 401 ? 'not signed in' : 'not allowed');
    if (e.status === 401) storage((s) => s.removeItem(TOKEN_KEY));
    askToken(retry);
  }

  // ---- The server's clock ----------------------------------------------------------------

  // The marker shows the agent's time: its Date header (to the second), moved forward by any
  // later time the agent reports, so the marker is never behind what the page has seen.
  const clock = {
    skew: null,
    sawDate(header) {
      const t = header ? Date.parse(header) : NaN;
      if (Number.isFinite(t) && this.skew === null) this.skew = t - Date.now();
    },
    saw(t) {
      if (!isTime(t)) return;
      const d = t - Date.now();
      if (this.skew === null || d > this.skew) this.skew = d;
    },
    now() {
      return Date.now() + (this.skew || 0);
    },
  };

  // ---- The list of executions -------------------------------------------------------------

  function startList(tokenValue) {
    $('list').hidden = false;
    let timer = null;
    const refresh = async () => {
      try {
        const body = await callJson('/v1/experiments?limit=100', tokenValue);
        showList(Array.isArray(body) ? body : list(body && (body.experiments || body.executions || body.items)));
        connection('live', 'up to date');
        clearProblem();
        timer = setTimeout(refresh, LIST_REFRESH_MS);
      } catch (e) {
        if (e.status === 401 || e.status === 403) {
          denied(e, startList);
          return;
        }
        problem(e.status || null, e.message);
        connection('retrying', 'retrying');
        timer = setTimeout(refresh, LIST_REFRESH_MS);
      }
    };
    if (timer) clearTimeout(timer);
    refresh();
  }

  function showList(items) {
    const body = $('executions').tBodies[0];
    body.replaceChildren();
    for (const x of items.slice(0, 1000)) {
      if (!x || typeof x !== 'object') continue;
      const id = typeof x.id === 'string' && ID.test(x.id) ? x.id : null;
      const tr = el('tr', id ? { 'data-execution': id } : {});
      const name = el('td', { class: 'text' });
      if (id) {
        name.append(el('a', { href: '/ui/executions/' + encodeURIComponent(id) }, clip(x.name, MAX_NAME)));
      } else {
        name.textContent = clip(x.name, MAX_NAME);
      }
      tr.append(
        name,
        cellOf(badge(x.status)),
        cellOf(badge(x.end_state)),
        el('td', { class: 'num' }, score(x.score)),
        el('td', {}, rfc3339(x.started_ms)),
        el('td', { class: 'text' }, x.team ? clip(x.team, MAX_NAME) : '—'),
        el('td', { class: 'id' }, clip(x.id, MAX_NAME)),
      );
      body.append(tr);
    }
    $('list-empty').hidden = body.rows.length > 0;
  }

  function cellOf(child) {
    const td = el('td', {});
    td.append(child);
    return td;
  }

  function badge(word) {
    if (word === undefined || word === null || word === '') return el('span', {}, '—');
    return el('span', { class: 'status s-' + token(word) }, clip(word, MAX_NAME));
  }

  function score(s) {
    return typeof s === 'number' && Number.isFinite(s) ? s.toFixed(1) : '—';
  }

  // ---- The player ------------------------------------------------------------------------

  const state = {
    id: null,
    record: null,
    ended: false,
    log: [],
    logKeys: new Set(),
    span: 0,
    drawnFor: null,
    // A replay: { from (ms after the start), since (performance.now() then), speed, playing }.
    replay: null,
    replaying: false,
  };

  function startPlayer(id, tokenValue) {
    state.id = id;
    $('player').hidden = false;
    $('execution-id').textContent = id;
    startControls();
    follow(tokenValue);
    setInterval(tick, TICK_MS);
  }

  /** Follows the event stream, opening it again with backoff until the run's `end`. */
  async function follow(tokenValue) {
    let backoff = BACKOFF_MIN_MS;
    while (!state.ended) {
      connection('connecting', 'connecting');
      try {
        const got = await stream(tokenValue, () => {
          backoff = BACKOFF_MIN_MS;
        });
        if (state.ended) break;
        problem(null, got ? 'the event stream closed before the end; opening it again' : 'the event stream closed');
      } catch (e) {
        if (e.status === 401 || e.status === 403) {
          denied(e, follow);
          return;
        }
        if (e.status === 404) {
          problem(404, e.message);
          connection('missing', 'no such execution');
          return;
        }
        problem(e.status || null, e.message || String(e));
      }
      const wait = backoff / 2 + Math.random() * (backoff / 2);
      connection('retrying', 'retrying in ' + (wait / 1000).toFixed(1) + ' s');
      await new Promise((r) => setTimeout(r, wait));
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
    connection('ended', 'ended');
  }

  /** One connection to the event stream; true when it carried at least one event. */
  async function stream(tokenValue, onEvent) {
    const abort = new AbortController();
    let idle = null;
    const awake = () => {
      clearTimeout(idle);
      idle = setTimeout(() => abort.abort(), IDLE_MS);
    };
    awake();
    let any = false;
    let first = true;
    try {
      const path = '/v1/experiments/' + encodeURIComponent(state.id) + '/events';
      const response = await call(path, tokenValue, 'text/event-stream', abort.signal);
      if (!response.body) throw new HttpError(0, 'the event stream has no body');
      connection('live', 'live');
      clearProblem();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        awake();
        buffer += value;
        // Lines end in \n, \r\n or \r; a \r at the end of a chunk may be half of a \r\n.
        const cut = buffer.endsWith('\r') ? buffer.length - 1 : buffer.length;
        const text = buffer.slice(0, cut).replace(/\r\n?/g, '\n');
        const held = buffer.slice(cut);
        const blocks = text.split('\n\n');
        buffer = blocks.pop() + held;
        if (buffer.length > MAX_EVENT_CHARS) {
          throw new HttpError(0, 'an event of the stream is longer than ' + MAX_EVENT_CHARS + ' characters');
        }
        for (const block of blocks) {
          const event = parseEvent(block);
          if (!event) continue;
          any = true;
          onEvent();
          handle(event, first, tokenValue);
          if (event.type === 'record') first = false;
          if (state.ended) {
            reader.cancel().catch(() => {});
            return any;
          }
        }
      }
      return any;
    } catch (e) {
      if (e && e.name === 'AbortError') throw new HttpError(0, 'the event stream was silent for ' + IDLE_MS / 1000 + ' s');
      if (e instanceof HttpError) throw e;
      throw new HttpError(0, 'the event stream broke: ' + clip(e && e.message, MAX_NAME));
    } finally {
      clearTimeout(idle);
      abort.abort();
    }
  }

  /** One server-sent event block: `{type, data}`, or null for a comment or an empty event. */
  function parseEvent(block) {
    let type = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') type = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length === 0) return null;
    return { type, data: data.join('\n') };
  }

  function handle(event, first, tokenValue) {
    let value;
    try {
      value = JSON.parse(event.data);
    } catch (_) {
      problem(null, 'the agent sent a ' + clip(event.type, 32) + ' event that is not JSON');
      return;
    }
    switch (event.type) {
      case 'record':
        setRecord(value);
        // Joining a run: the lines logged before this connection come from the log endpoint.
        if (first && !isFinal(value)) backfill(tokenValue);
        break;
      case 'log':
        addLog(value);
        scheduleLog();
        break;
      case 'end':
        state.ended = true;
        setRecord(value);
        break;
      case 'lagged':
        problem(null, 'this page fell behind and missed ' + clip(value && value.missed, 32) + ' events; the log is filled in again');
        backfill(tokenValue);
        break;
      default:
        break;
    }
  }

  async function backfill(tokenValue) {
    try {
      const body = await callJson('/v1/experiments/' + encodeURIComponent(state.id) + '/log', tokenValue);
      for (const line of list(body && body.lines)) addLog(line);
      scheduleLog();
    } catch (e) {
      problem(e.status || null, 'the log could not be read: ' + e.message);
    }
  }

  function isFinal(record) {
    return !!record && record.status !== 'running' && record.status !== 'queued';
  }

  function setRecord(record) {
    if (!record || typeof record !== 'object') return;
    state.record = record;
    if (isFinal(record) && isTime(record.ended_ms)) clock.saw(record.ended_ms);
    drawHeader();
    drawTables();
    draw();
  }

  // ---- The log ---------------------------------------------------------------------------

  function addLog(entry) {
    if (!entry || typeof entry !== 'object') return;
    const key = [entry.at_ms, entry.source, entry.level, entry.step, entry.message].map(String).join('\u0000');
    // The stream and the log endpoint can both carry a line: keep each once.
    if (state.logKeys.has(key)) return;
    state.logKeys.add(key);
    if (isTime(entry.at_ms)) clock.saw(entry.at_ms);
    // In time order; lines mostly come in order, so this looks back only a few lines.
    let i = state.log.length;
    while (i > 0 && isTime(entry.at_ms) && state.log[i - 1].at_ms > entry.at_ms) i--;
    state.log.splice(i, 0, entry);
    while (state.log.length > MAX_LOG_KEPT) state.log.shift();
  }

  let logPending = false;
  function scheduleLog() {
    if (logPending) return;
    logPending = true;
    setTimeout(() => {
      logPending = false;
      drawLog();
    }, 100);
  }

  function drawLog() {
    const ol = $('log');
    const t0 = state.record ? state.record.started_ms : 0;
    const horizon = state.replaying && state.record ? state.record.started_ms + now().at : Infinity;
    const shown = state.log.filter((e) => !(e.at_ms > horizon)).slice(-MAX_LOG_SHOWN);
    const atBottom = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 24;
    ol.replaceChildren(
      ...shown.map((e) => {
        const step = e.step ? ' ' + clip(e.step, MAX_NAME) + ':' : '';
        const text = offset(t0, e.at_ms) + ' [' + clip(e.source, 32) + '] ' + clip(e.level, 32) + step + ' ' + clip(e.message, MAX_MESSAGE);
        return el('li', { 'data-level': token(e.level), 'data-at-ms': isTime(e.at_ms) ? e.at_ms - t0 : '' }, text);
      }),
    );
    const left = state.log.length - shown.length;
    $('log-count').textContent = state.log.length + ' lines' + (left > 0 ? ', ' + shown.length + ' shown' : '');
    if (atBottom) ol.scrollTop = ol.scrollHeight;
  }

  // ---- The header and the tables -----------------------------------------------------------

  function drawHeader() {
    const r = state.record;
    const name = clip(r.name, MAX_NAME);
    $('name').textContent = name;
    document.title = name + ' — Faultline';
    $('description').textContent = clip(r.description, MAX_MESSAGE);
    const status = $('status');
    status.setAttribute('data-status', token(r.status));
    status.className = 'status s-' + token(r.status);
    status.textContent = clip(r.status, MAX_NAME);
    const end = $('end-state');
    const endState = typeof r.end_state === 'string' ? r.end_state : '';
    end.setAttribute('data-end-state', endState ? token(endState) : '');
    end.className = endState ? 'status s-' + token(endState) : '';
    end.textContent = endState ? clip(endState, MAX_NAME) : isFinal(r) ? '—' : 'not ended';
    const s = $('score');
    s.setAttribute('data-score', typeof r.score === 'number' && Number.isFinite(r.score) ? String(r.score) : '');
    s.textContent = score(r.score);
    $('started').textContent = rfc3339(r.started_ms);
    $('reason').textContent = r.reason ? clip(r.reason, MAX_MESSAGE) : '—';
    $('team').textContent = r.team ? clip(r.team, MAX_NAME) : '—';
    $('started-by').textContent = r.started_by ? clip(r.started_by, MAX_NAME) : '—';
  }

  function drawTables() {
    const r = state.record;
    const t0 = r.started_ms;
    const faults = $('faults').tBodies[0];
    faults.replaceChildren(
      ...list(r.faults).slice(0, 500).map((f) => {
        const targets = list(f.targets);
        const injected = targets.map((t) => t.injected_ms).filter(isTime);
        const reverted = targets.map((t) => t.reverted_ms).filter(isTime);
        const row = el('tr', { 'data-fault-row': clip(f.name, MAX_NAME), 'data-status': token(f.status) });
        row.append(
          el('td', { class: 'text' }, clip(f.name, MAX_NAME)),
          el('td', { class: 'text' }, clip(f.lane, MAX_NAME)),
          cellOf(badge(f.status)),
          el('td', { class: 'num' }, injected.length ? offset(t0, Math.min(...injected)) : '—'),
          el('td', { class: 'num' }, reverted.length ? offset(t0, Math.max(...reverted)) : '—'),
          el('td', { class: 'text' }, clip(f.message, MAX_MESSAGE)),
        );
        return row;
      }),
    );
    const probes = $('probes').tBodies[0];
    probes.replaceChildren(
      ...list(r.probes).slice(0, 500).map((p) => {
        const checks = list(p.checks);
        const count = (v) => checks.filter((c) => c && c.verdict === v).length;
        const tally = p.tally && typeof p.tally === 'object' ? p.tally : {};
        const n = (k, v) => (Number.isFinite(tally[k]) && tally[k] > 0 ? tally[k] : count(v));
        const last = checks[checks.length - 1];
        const row = el('tr', { 'data-probe-row': clip(p.name, MAX_NAME) });
        row.append(
          el('td', { class: 'text' }, clip(p.name, MAX_NAME)),
          el('td', {}, clip(p.mode || 'action', 32)),
          el('td', { class: 'num' }, n('passed', 'passed')),
          el('td', { class: 'num' }, n('failed', 'failed')),
          el('td', { class: 'num' }, n('not_applicable', 'not-applicable')),
          el('td', { class: 'text' }, last ? clip(last.verdict, 32) + ' ' + offset(t0, last.at_ms) + ': ' + clip(last.message, MAX_MESSAGE) : '—'),
        );
        return row;
      }),
    );
  }

  // ---- The timeline ----------------------------------------------------------------------

  /**
   * Where the marker is, in milliseconds since the run's start, how long the axis spans, and
   * whether the page replays (then it shows the run as it was at the marker). Following, the
   * marker is at the agent's current time (at the end, once the run ended).
   */
  function now() {
    const r = state.record;
    const { at, span } = following(r);
    const replay = state.replay;
    if (!replay) return { at, span, replaying: false };
    let position = replay.from + (replay.playing ? (performance.now() - replay.since) * replay.speed : 0);
    if (position >= at) {
      if (!isFinal(r)) {
        // Caught up with a live run: follow it again.
        state.replay = null;
        return { at, span, replaying: false };
      }
      position = at;
      replay.from = at;
      replay.playing = false;
    }
    return { at: Math.max(0, position), span, replaying: true };
  }

  /** How long `r` has run (all of it, once it ended) and the axis' span. */
  function following(r) {
    if (isFinal(r)) {
      const end = isTime(r.ended_ms) && r.ended_ms >= r.started_ms ? r.ended_ms : latest(r);
      const span = Math.max(end - r.started_ms, 1);
      return { at: span, span };
    }
    const at = Math.max(0, clock.now() - r.started_ms, latest(r) - r.started_ms);
    return { at, span: Math.max(liveSpan(at), 1) };
  }

  /** Replays from `from` ms after the start (null: where the marker is), playing or not. */
  function replayFrom(from, playing) {
    const at = from === null ? now().at : from;
    const speed = Number($('speed').value) || 1;
    state.replay = { from: Math.max(0, at), since: performance.now(), speed, playing };
    state.replaying = true;
    drawLog();
    draw();
  }

  function startControls() {
    $('play').onclick = () => {
      const replay = state.replay;
      if (!state.record) return;
      if (!replay) replayFrom(0, true);
      else if (replay.playing) replayFrom(null, false);
      else replayFrom(replay.from >= now().span && isFinal(state.record) ? 0 : null, true);
    };
    $('speed').onchange = () => {
      if (state.replay) replayFrom(null, state.replay.playing);
    };
    $('seek').oninput = () => {
      if (state.record) replayFrom(Number($('seek').value), state.replay ? state.replay.playing : false);
    };
    $('follow').onclick = () => {
      state.replay = null;
      state.replaying = false;
      drawLog();
      draw();
    };
  }

  function drawControls(at, span, replaying) {
    const controls = $('controls');
    controls.setAttribute('data-mode', replaying ? 'replay' : 'follow');
    const playing = replaying && state.replay && state.replay.playing;
    $('play').textContent = playing ? 'Pause' : replaying ? 'Play' : 'Replay';
    $('follow').disabled = !replaying;
    const seek = $('seek');
    seek.max = String(Math.round(span));
    if (document.activeElement !== seek) seek.value = String(Math.round(at));
  }

  /** The latest time the record holds. */
  function latest(r) {
    let t = r.started_ms;
    const see = (x) => {
      if (isTime(x) && x > t) t = x;
    };
    for (const f of list(r.faults)) {
      see(f.started_ms);
      see(f.ended_ms);
      for (const x of list(f.targets)) {
        see(x.injected_ms);
        see(x.reverted_ms);
      }
    }
    for (const a of list(r.activities)) {
      see(a.started_ms);
      see(a.ended_ms);
    }
    for (const p of list(r.probes)) for (const c of list(p.checks)) see(c.at_ms);
    return t;
  }

  function lanesOf(r) {
    const lanes = [];
    for (const x of list(r.activities).concat(list(r.faults))) {
      const lane = String(x && x.lane !== undefined ? x.lane : '');
      if (!lanes.includes(lane)) lanes.push(lane);
    }
    return lanes.slice(0, 200);
  }

  /** The checks to draw, passes first so a failure is never under a pass (the report's). */
  function drawnChecks(checks) {
    const indexed = checks.map((c, i) => [i, c]).filter(([, c]) => c && isTime(c.at_ms));
    const passed = indexed.filter(([, c]) => c.verdict === 'passed');
    const other = indexed.filter(([, c]) => c.verdict !== 'passed').slice(0, MAX_MARKS);
    const room = MAX_MARKS - other.length;
    let shown = passed;
    if (passed.length > room) {
      const stride = room > 0 ? Math.ceil(passed.length / room) : Infinity;
      shown = room > 0 ? passed.filter((_, i) => i % stride === 0) : [];
    }
    return shown.concat(other);
  }

  function draw() {
    const r = state.record;
    if (!r || !isTime(r.started_ms)) return;
    const { at, span, replaying } = now();
    state.span = span;
    state.replaying = replaying;
    const t0 = r.started_ms;
    const x = (t) => X0 + Math.round((Math.min(Math.max(t - t0, 0), span) / span) * (X1 - X0));
    // What is drawn is the run up to the marker: everything, unless the page replays.
    const horizon = t0 + at;
    const nowAt = () => horizon;
    const until = (end) => Math.min(end, horizon);
    // While following, what is still open grows every tick; a replay is drawn anew instead.
    const openFrom = (open, from) => (open && !replaying ? from : '');
    const bar = (a, b) => {
      const xa = x(a);
      return [Math.min(xa, X1 - 2), Math.max(x(Math.max(a, b)) - xa, 2)];
    };
    const lanes = lanesOf(r);
    const probes = list(r.probes).slice(0, 200);
    const rows = lanes.length + probes.length;
    const bottom = AXIS + rows * ROW;
    const height = bottom + 8;
    const svg = $('timeline');
    svg.setAttribute('height', height);
    svg.setAttribute('viewBox', '0 0 ' + WIDTH + ' ' + height);
    const parts = [];

    for (let i = 0; i < rows; i++) {
      parts.push(svgEl('rect', { class: 'row-bg ' + (i % 2 ? 'odd' : 'even'), x: 0, y: AXIS + i * ROW, width: WIDTH, height: ROW }));
    }
    // The time each fault was injected, as a band across every row.
    for (const f of list(r.faults)) {
      const w = injectedWindow(f);
      if (!w || w[0] > horizon) continue;
      const [bx, bw] = bar(w[0], w[1] === null ? nowAt() : until(w[1]));
      parts.push(svgEl('rect', { class: 'window', x: bx, y: AXIS, width: bw, height: rows * ROW, 'data-open': openFrom(w[1] === null, w[0]) }));
    }
    const axis = svgEl('g', { class: 'axis' });
    const step = tickStep(span);
    for (let at = 0; at <= span; at += step) {
      const tx = x(t0 + at);
      axis.append(
        svgEl('line', { class: 'tick', x1: tx, y1: AXIS - 6, x2: tx, y2: bottom }),
        svgEl('text', { x: tx, y: 16, 'text-anchor': 'middle' }, tickLabel(at, step)),
      );
    }
    parts.push(axis);

    lanes.forEach((lane, i) => {
      const top = AXIS + i * ROW;
      const g = svgEl('g', { class: 'row lane', id: 'lane-' + i, 'data-lane': clip(lane, MAX_NAME) });
      g.append(label(top, lane, 'lane'));
      for (const a of list(r.activities)) {
        if (String(a.lane) !== lane || a.kind === 'fault' || !isTime(a.started_ms) || a.started_ms > horizon) continue;
        const open = !isTime(a.ended_ms);
        const [bx, bw] = bar(a.started_ms, open ? nowAt() : until(a.ended_ms));
        const kind = a.kind === 'wait' ? 'wait' : a.kind === 'probe' ? 'probe' : 'other';
        const status = token(a.status);
        const rect = svgEl('rect', {
          class: 'bar ' + kind + ' ' + status + (status === 'completed' || status === 'running' ? '' : ' not-completed'),
          x: bx,
          y: top + (ROW - THIN) / 2,
          width: bw,
          height: THIN,
          'data-step': clip(a.name, MAX_NAME),
          'data-status': status,
          'data-open': openFrom(open, a.started_ms),
        });
        rect.append(svgEl('title', {}, kind + ' ' + clip(a.name, MAX_NAME) + ': ' + clip(a.status, MAX_NAME) + ', ' + offset(t0, a.started_ms) + ' to ' + offset(t0, a.ended_ms) + (a.output ? '\n' + clip(a.output, MAX_MESSAGE) : '')));
        g.append(rect);
      }
      list(r.faults).forEach((f, fi) => {
        if (String(f.lane) === lane) g.append(faultBar(f, fi, top, t0, bar, horizon, replaying));
      });
      parts.push(g);
    });

    probes.forEach((p, pi) => {
      const top = AXIS + (lanes.length + pi) * ROW;
      const g = svgEl('g', { class: 'row probe', id: 'probe-' + pi, 'data-probe': clip(p.name, MAX_NAME) });
      g.append(label(top, p.name, 'probe'));
      for (const [ci, c] of drawnChecks(list(p.checks).filter((c) => c && c.at_ms <= horizon))) {
        const verdict = token(c.verdict);
        const mark = svgEl('circle', {
          class: 'mark ' + verdict,
          id: 'check-' + pi + '-' + ci,
          cx: x(c.at_ms),
          cy: top + ROW / 2,
          r: MARK_R,
          'data-verdict': verdict,
          'data-moment': token(c.moment),
          'data-at-ms': c.at_ms - t0,
        });
        mark.append(svgEl('title', {}, clip(p.name, MAX_NAME) + ' ' + clip(c.verdict, 32) + ' at ' + offset(t0, c.at_ms) + ' (' + clip(c.moment, 32) + '): ' + clip(c.message, MAX_MESSAGE)));
        g.append(mark);
      }
      parts.push(g);
    });

    if (isFinal(r) && isTime(r.ended_ms) && r.ended_ms <= horizon) {
      const ex = x(r.ended_ms);
      const end = svgEl('line', { class: 'end', x1: ex, y1: AXIS, x2: ex, y2: bottom });
      end.append(svgEl('title', {}, 'end of the run'));
      parts.push(end);
    }
    const marker = svgEl('g', { id: 'marker-group' });
    marker.append(
      svgEl('line', { id: 'marker', class: 'marker', x1: X0, y1: AXIS - 6, x2: X0, y2: bottom, 'data-at-ms': 0 }),
      svgEl('text', { id: 'marker-label', class: 'marker-label', x: X0 + 4, y: AXIS - 2 }, ''),
    );
    parts.push(marker);
    svg.replaceChildren(...parts);
    state.drawnFor = { x, bottom };
    moveMarker(at, span, replaying);
  }

  /** When a fault was injected: its first target's inject to its last revert (null: not yet). */
  function injectedWindow(f) {
    const targets = list(f.targets);
    const injected = targets.map((t) => t.injected_ms).filter(isTime);
    const reverted = targets.map((t) => t.reverted_ms).filter(isTime);
    const final = f.status !== 'running' && f.status !== 'pending';
    const end = reverted.length === targets.length && reverted.length > 0 ? Math.max(...reverted) : final && isTime(f.ended_ms) ? f.ended_ms : null;
    if (injected.length) return [Math.min(...injected), end];
    if (isTime(f.started_ms)) return [f.started_ms, isTime(f.ended_ms) ? f.ended_ms : final ? f.started_ms : null];
    return null;
  }

  /** The status of fault `f` at `horizon`, from its times, when the page replays. */
  function statusAt(f, horizon) {
    if (!isTime(f.started_ms) || f.started_ms > horizon) return 'pending';
    if (isTime(f.ended_ms) && f.ended_ms <= horizon) return f.status;
    return 'running';
  }

  function faultBar(f, index, top, t0, bar, horizon, replaying) {
    const word = replaying ? statusAt(f, horizon) : f.status;
    const status = token(word);
    const g = svgEl('g', { class: 'fault ' + status, id: 'fault-' + index, 'data-fault': clip(f.name, MAX_NAME), 'data-status': status });
    let w = injectedWindow(f);
    if (w && w[0] > horizon) w = null;
    let labelX = X0 + 4;
    if (isTime(f.started_ms) && f.started_ms <= horizon) {
      const open = !isTime(f.ended_ms) || f.ended_ms > horizon;
      const [sx, sw] = bar(f.started_ms, open ? horizon : f.ended_ms);
      g.append(svgEl('rect', { class: 'span fault', x: sx, y: top + ROW / 2 - 2, width: sw, height: 4, 'data-open': open && !replaying ? f.started_ms : '' }));
      labelX = sx + 4;
    }
    if (w) {
      const open = w[1] === null || w[1] > horizon;
      const [bx, bw] = bar(w[0], open ? horizon : w[1]);
      const rect = svgEl('rect', { class: 'bar fault ' + status, x: bx, y: top + (ROW - BAR) / 2, width: bw, height: BAR, 'data-open': open && !replaying ? w[0] : '' });
      let title = clip(f.name, MAX_NAME) + ': ' + clip(f.status, MAX_NAME) + ', injected ' + offset(t0, w[0]) + ' to ' + (open ? 'now' : offset(t0, w[1]));
      for (const t of list(f.targets).slice(0, 20)) {
        title += '\ntarget ' + clip(t.target, MAX_NAME) + (t.error ? ': ' + clip(t.error, MAX_MESSAGE) : '');
      }
      if (f.message) title += '\n' + clip(f.message, MAX_MESSAGE);
      rect.append(svgEl('title', {}, title));
      g.append(rect);
      labelX = bx + 4;
    }
    // The state, in words, on the bar (or where the fault will be, when it has not started).
    const short = String(f.name === undefined ? '' : f.name);
    g.append(svgEl('text', { class: 'state', x: Math.min(labelX, X1 - 160), y: top + ROW / 2 + 4, 'data-status': status }, clip(short.length > LABEL ? short.slice(0, LABEL - 1) + '…' : short, LABEL + 1) + ': ' + clip(word, 32)));
    return g;
  }

  function label(top, name, kind) {
    const s = String(name === undefined || name === null ? '' : name);
    const short = s.length > LABEL ? s.slice(0, LABEL - 1) + '…' : s;
    const t = svgEl('text', { class: 'label ' + kind, x: 8, y: top + ROW / 2 + 4 }, short);
    t.append(svgEl('title', {}, kind + ' ' + clip(s, MAX_NAME)));
    return t;
  }

  /** Every tick: the marker and whatever is still open grow to the current time. */
  function tick() {
    const r = state.record;
    if (!r || !state.drawnFor) return;
    const { at, span, replaying } = now();
    if (span !== state.span || replaying || replaying !== state.replaying) {
      // A replay shows the run as it was at the marker: drawn anew each tick.
      if (replaying || state.replaying) {
        state.replaying = replaying;
        drawLog();
      }
      draw();
      return;
    }
    moveMarker(at, span, replaying);
  }

  /** Puts the marker at `at` and grows what is still open up to it. */
  function moveMarker(at, span, replaying) {
    const r = state.record;
    drawControls(at, span, replaying);
    const { x } = state.drawnFor;
    const t = r.started_ms + at;
    const mx = x(t);
    const marker = $('marker');
    marker.setAttribute('x1', mx);
    marker.setAttribute('x2', mx);
    marker.setAttribute('data-at-ms', Math.round(at));
    const label = $('marker-label');
    label.setAttribute('x', Math.min(mx + 4, X1 - 60));
    label.textContent = offset(0, at);
    $('elapsed').textContent = duration(following(r).at) + (isFinal(r) ? '' : ' so far');
    for (const open of $('timeline').querySelectorAll('[data-open]:not([data-open=""])')) {
      const from = Number(open.getAttribute('data-open'));
      const ox = Math.min(x(from), X1 - 2);
      open.setAttribute('width', Math.max(mx - ox, 2));
    }
  }

  // ---- Start -----------------------------------------------------------------------------

  function start() {
    const tokenValue = takeToken();
    const match = /^\/ui\/executions\/([^/]+)$/.exec(location.pathname);
    const begin = (t) => {
      if (match) {
        const id = decodeURIComponent(match[1]);
        if (!ID.test(id)) {
          problem(null, 'this is not an execution id');
          return;
        }
        startPlayer(id, t);
      } else {
        startList(t);
      }
    };
    if (validToken(tokenValue)) {
      begin(tokenValue);
    } else {
      if (tokenValue) problem(null, 'the token given is not 1 to ' + MAX_TOKEN + ' printable ASCII characters');
      connection('idle', 'no token');
      askToken(begin);
    }
  }

  // A new `#token=` on an open page (a pasted link) starts it over with that token.
  window.addEventListener('hashchange', () => {
    if (new URLSearchParams(location.hash.slice(1)).has('token')) {
      takeToken();
      location.reload();
    }
  });

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
