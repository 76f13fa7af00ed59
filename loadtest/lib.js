// lib.js — shared helpers for sagaflow's k6 scripts (smoke.js, join.js,
// coupon.js; the sync benchmark is a Go benchmark, make bench-sync).
//
// Environment (passed by loadtest/k6.sh with -e):
//   BASE_URL  sagaflow API base URL, default http://127.0.0.1:8080
//   BASE_URLS several base URLs, space-separated (e.g. the cluster's two
//             APIs), for a script that spreads its requests (baseURLs())
//   API_KEY   bearer key for /v1 routes, default demo-key
//   ALLOW_NON_LOOPBACK=true  let a script target a host that is not loopback
//
// Every request helper takes a `name` that becomes the request's `name` tag,
// so metrics and thresholds can be split per endpoint, e.g.
//   'http_req_duration{name:healthz}': ['p(95)<50']
// (and URLs with IDs in them don't each become their own time series).

import http from 'k6/http';
import { sleep } from 'k6';
import exec from 'k6/execution';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const API_KEY = __ENV.API_KEY || 'demo-key';

// baseURLs() -> BASE_URLS split on white space, each without a trailing
// slash, or [BASE_URL] when BASE_URLS is unset or blank.
export function baseURLs() {
  const list = (__ENV.BASE_URLS || '').split(/\s+/).filter((u) => u !== '');
  return list.length > 0 ? list.map((u) => u.replace(/\/+$/, '')) : [BASE_URL];
}

// url('/v1/probes') -> 'http://127.0.0.1:8080/v1/probes'; `base` overrides
// BASE_URL.
export function url(path, base = BASE_URL) {
  return base + (path.startsWith('/') ? path : `/${path}`);
}

// authHeaders() -> { Authorization: 'Bearer <API_KEY>' }; `key` overrides the
// key (e.g. another tenant's), `extra` adds headers.
export function authHeaders(key = API_KEY, extra = {}) {
  return Object.assign({ Authorization: `Bearer ${key}` }, extra);
}

// requestParams builds k6 request params.
//   name     value of the `name` tag (required: one per endpoint)
//   auth     send the bearer header (default true); a string is used as the key
//   headers  extra headers
//   tags     extra tags
//   expect   HTTP status(es) that count as success for http_req_failed, for
//            requests that are *meant* to return e.g. 401 or 404
//   timeout  request timeout (k6 default 60s)
// (getJSON and postJSON also take `base`, the base URL instead of BASE_URL.)
export function requestParams(name, { auth = true, headers = {}, tags = {}, expect, timeout } = {}) {
  let h = Object.assign({ Accept: 'application/json' }, headers);
  if (auth) {
    h = authHeaders(typeof auth === 'string' ? auth : API_KEY, h);
  }
  const p = { headers: h, tags: Object.assign({ name }, tags) };
  if (expect !== undefined) {
    p.responseCallback = http.expectedStatuses(...[].concat(expect));
  }
  if (timeout !== undefined) {
    p.timeout = timeout;
  }
  return p;
}

// getJSON('/v1/workflows/abc', 'workflow_get', opts) -> k6 Response
export function getJSON(path, name, opts = {}) {
  return http.get(url(path, opts.base), requestParams(name, opts));
}

// postJSON('/v1/probes', {}, 'probes_start', opts) -> k6 Response.
// `body` is JSON-encoded (undefined/null send `{}`).
export function postJSON(path, body, name, opts = {}) {
  const p = requestParams(name, opts);
  p.headers['Content-Type'] = 'application/json';
  return http.post(url(path, opts.base), JSON.stringify(body == null ? {} : body), p);
}

// json(res) -> parsed body, or null when the body is empty or not JSON
// (unlike res.json(), never throws, so a bad response fails a check instead
// of aborting the iteration).
export function json(res) {
  if (!res || typeof res.body !== 'string' || res.body.length === 0) {
    return null;
  }
  try {
    return JSON.parse(res.body);
  } catch (_) {
    return null;
  }
}

// isJSON(res): the Content-Type says JSON.
export function isJSON(res) {
  const ct = (res && res.headers && (res.headers['Content-Type'] || res.headers['content-type'])) || '';
  return /^application\/(.+\+)?json\b/i.test(ct);
}

// pollUntil calls fn() up to `tries` times, sleeping `interval` seconds
// between calls, until done(value) is true. Bounded: it never sleeps more
// than (tries-1)*interval seconds in total.
//   pollUntil(() => getJSON(...), (res) => json(res)?.status === 'COMPLETED',
//             { tries: 50, interval: 0.2 })
//   -> { ok: bool, value: last fn() result, tries: calls made, elapsedMs }
export function pollUntil(fn, done, { tries = 50, interval = 0.2 } = {}) {
  const start = Date.now();
  let value;
  for (let i = 1; i <= tries; i++) {
    value = fn(i);
    if (done(value)) {
      return { ok: true, value, tries: i, elapsedMs: Date.now() - start };
    }
    if (i < tries) {
      sleep(interval);
    }
  }
  return { ok: false, value, tries, elapsedMs: Date.now() - start };
}

// Temporal workflow execution statuses after which polling is pointless.
export const TERMINAL_STATUSES = ['COMPLETED', 'FAILED', 'CANCELED', 'TERMINATED', 'TIMED_OUT', 'CONTINUED_AS_NEW'];

// isLoopback('http://127.0.0.1:8080') -> true
export function isLoopback(base = BASE_URL) {
  return /^https?:\/\/(localhost|127(\.\d{1,3}){3}|\[::1\])(:\d+)?(\/|$)/i.test(base);
}

// requireLoopback() aborts the test (k6 exit code 108) unless BASE_URL (or
// `base`) is a loopback address or ALLOW_NON_LOOPBACK=true. Call it from
// setup().
export function requireLoopback(base = BASE_URL) {
  if (!isLoopback(base) && __ENV.ALLOW_NON_LOOPBACK !== 'true') {
    exec.test.abort(`${base} is not a loopback address; set ALLOW_NON_LOOPBACK=true to load-test it anyway`);
  }
}

// requireUp() aborts the test (k6 exit code 108) with a readable message when
// nothing answers GET /healthz, instead of failing every request for the
// whole run. `base` overrides BASE_URL. Call it from setup().
export function requireUp(base = BASE_URL) {
  const res = http.get(url('/healthz', base), { tags: { name: 'healthz' }, timeout: '5s' });
  if (res.status !== 200) {
    const why = res.status === 0 ? res.error : `HTTP ${res.status} ${String(res.body).slice(0, 200)}`;
    exec.test.abort(`sagaflow is not answering at ${base}/healthz (${why}); is it running ("sagaflow dev")?`);
  }
}

// requireReady() polls GET /readyz (no auth) until it answers 200, and aborts
// the test (k6 exit code 108) printing the last 503 body, which names what is
// down, when it does not within tries*interval seconds (default ~5 s).
// `base` overrides BASE_URL. Call it from setup(), after requireUp().
export function requireReady({ tries = 25, interval = 0.2, base = BASE_URL } = {}) {
  const ready = pollUntil(
    () => getJSON('/readyz', 'readyz', { auth: false, expect: [200, 503], base }),
    (res) => res.status === 200,
    { tries, interval },
  );
  if (!ready.ok) {
    const res = ready.value;
    exec.test.abort(
      `${base}/readyz is not ready after ${ready.tries} tries: HTTP ${res.status} ${String(res.body).slice(0, 500)}`,
    );
  }
}

// msBetween('2026-01-02T03:04:05.123456789Z', '...') -> milliseconds between
// two RFC 3339 timestamps (fractions beyond ms are dropped), or NaN.
export function msBetween(from, to) {
  const parse = (s) => (typeof s === 'string' ? Date.parse(s.replace(/(\.\d{3})\d+/, '$1')) : NaN);
  return parse(to) - parse(from);
}

// envInt('RATE', 2000, 1, 50000) -> __ENV.RATE as an integer in min..max, or
// `def` when unset or empty; throws (k6 exit code 107) on anything else.
export function envInt(name, def, min, max) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') {
    return def;
  }
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new Error(`${name}=${raw}: want an integer in ${min}..${max}`);
  }
  return n;
}

// envDuration('DURATION', '20s') -> __ENV.DURATION if it is a k6 duration
// (e.g. 500ms, 30s, 1m30s), or `def` when unset or empty; throws (k6 exit
// code 107) on anything else.
export function envDuration(name, def) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') {
    return def;
  }
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(raw)) {
    throw new Error(`${name}=${raw}: want a k6 duration such as 30s or 1m30s`);
  }
  return raw;
}

// newRunId() -> e.g. 'ltm9x2k1a3f7': a short id, unique enough to keep one
// run's users, keys and names apart from another's.
export function newRunId() {
  return `lt${Date.now().toString(36)}${Math.floor(Math.random() * 36 ** 4).toString(36)}`;
}

// nonEmpty(v): v is a non-empty string.
export function nonEmpty(v) {
  return typeof v === 'string' && v.length > 0;
}
