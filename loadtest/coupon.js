// coupon.js — k6 load test of the first-come coupon hot path on a running
// sagaflow stack (or on the bare baseline, loadtest/bare, for comparison).
//
// What it tests (about 10 s + DURATION, plus up to ~30 s of teardown,
// bounded in time and iterations, traffic only to BASE_URL, or to each of
// BASE_URLS, which must be loopback unless ALLOW_NON_LOOPBACK=true):
//   setup     GET /healthz must answer and GET /readyz must turn 200 within
//             ~5 s on every base URL (else abort, exit code 108); then, on
//             the first base URL, creates one campaign
//             (POST /v1/campaigns, stock STOCK, window now-1s .. now+10min)
//             and picks a run id, so that users are unique to this run.
//             The bare baseline answers 201 {"id":"bare"}: the run goes on,
//             and the teardown checks are skipped.
//   requests  ramping-arrival-rate (or, with VUS, a closed loop: see VUS
//             below): from 0 to RATE requests/s over 10 s,
//             then RATE requests/s for DURATION. Each iteration sends one
//             POST /v1/campaigns/{id}/requests {"user_id"}, to the base URL
//             of BASE_URLS its iteration number picks in turn (client-side
//             balancing over e.g. the cluster's two APIs), for a user drawn
//             at random from USERS users (`<run id>-u<n>`, n in [0, USERS)),
//             so some users ask twice on purpose. Checks the answer is one of
//               202 {"status":"accepted","rank":n}   (n <= STOCK on sagaflow)
//               409 {"error":{"code":"already_requested"},"rank":n}
//               410 {"error":{"code":"sold_out"|"closed"}}
//             Metrics:
//               coupon_answered   share of requests answered 202/409/410, > 0.999
//               http_req_duration{name:coupon_request}   p(99) < 20 ms
//               coupon_accepted / coupon_duplicate / coupon_sold_out / coupon_closed
//                                 counts of 202 / 409 / 410 sold_out / 410 closed
//             Requests carry the tag phase=ramp or phase=hold (sent in the
//             first 10 s or after): http_reqs{name:coupon_request,phase:hold}
//             counts the requests of the hold, so its count / DURATION is the
//             steady rate served (handleSummary reports it).
//   teardown  (sagaflow only; on the first base URL)
//             GET /v1/campaigns/{id} every 0.5 s (at most 60
//             polls, ~30 s) until status is done or issued == accepted: the
//             campaign workflow has issued a coupon, in PostgreSQL, to every
//             accepted request. Metrics:
//               campaign_consistent  issued == accepted and accepted <= STOCK, must be 1
//               issue_drain_seconds  from the end of the requests (teardown
//                                    starts once every request has finished)
//                                    until that state is seen; ~0 when the
//                                    campaign was done already
//             Then GET /v1/campaigns/{id}/coupons/{user} for 10 users of the
//             run: issued (with a CPN- code and rank <= STOCK), pending or none.
// Every request carries a `name` tag (healthz, readyz, campaign_create,
// coupon_request, campaign_get, coupon_get) so thresholds are per endpoint.
// With the defaults (5000 in stock, ~50000 requests) the stock is gone within
// the ramp: most of the hold is answered 409/410, which are as hot as 202.
//
// How to run (stack up and `sagaflow dev` listening):
//   make loadtest-coupon                      # = loadtest/k6.sh loadtest/coupon.js
//   loadtest/k6.sh loadtest/coupon.js         # same, directly
//   DURATION=10s RATE=1000 loadtest/k6.sh loadtest/coupon.js
//   STOCK=100000 loadtest/k6.sh loadtest/coupon.js    # never sells out
//   go run ./loadtest/bare &                  # the bare baseline, then
//   BASE_URL=http://127.0.0.1:18080 loadtest/k6.sh loadtest/coupon.js
//   make bench-coupon                         # both, and their ratio (loadtest/bench-coupon.sh)
//   BASE_URLS='http://127.0.0.1:8080 http://127.0.0.1:8081' loadtest/k6.sh loadtest/coupon.js
//                                             # the cluster's two APIs (make cluster), turn by turn
// k6.sh writes an HTML report to .data/reports/coupon-<UTC timestamp>.html.
// Exit code: 0 pass, 99 a threshold failed, 108 aborted in setup (stack down),
// 107 a bad environment value.
//
// Environment (k6 reads the variables below from the environment, or from
// `-e NAME=value` after the script on the k6.sh command line; k6.sh passes
// BASE_URL and API_KEY):
//   BASE_URL  default http://127.0.0.1:8080
//   BASE_URLS base URLs, space-separated, to spread the coupon requests over
//             (setup and teardown use the first); when set, BASE_URL is unused
//   API_KEY   default demo-key
//   STOCK     the campaign's stock, default 5000
//   USERS     distinct users requests are drawn from, default 50000
//   RATE      requests/s after the 10 s ramp, default 1000 (k6 shares our 2
//             cores: at 2000/s its own CPU use pushes p99 past 20 ms)
//   DURATION  how long RATE is held after the ramp, default 20s (k6 duration)
//   VUS       closed loop instead (default 0: off): VUS virtual users send
//             requests back to back for 10 s (the warm-up, tagged
//             phase=ramp) + DURATION, and req_per_s is the most the server
//             answered (RATE is unused; no latency threshold; held means the
//             other thresholds passed). loadtest/bench-tracing.sh measures
//             what tracing costs at the ceiling with it
//   ALLOW_NON_LOOPBACK=true  allow base URLs that are not 127.0.0.0/8, localhost or [::1]
//   LABEL     the name of this run in the figures (default sagaflow)
//   FIGURES   file handleSummary() writes this run's figures to, as JSON, and
//             next to it FIGURES.env (the same as shell assignments, for
//             loadtest/bench-coupon.sh)
//   BASELINE  FIGURES file of an earlier run (the bare baseline's) to print
//             this run's ratios against (and to write req_ratio, below)
//
// The figures (handleSummary, at the end of the run, on stdout and in FIGURES):
//   requests   coupon requests answered in the whole run (ramp included)
//   req_per_s  requests served per second while RATE was held: the count of
//              http_reqs{name:coupon_request,phase:hold} / DURATION (k6's own
//              rate divides by the whole run, setup, ramp and teardown included)
//   p50_ms, p99_ms  http_req_duration{name:coupon_request} (ramp included)
//   dropped    iterations the arrival-rate executor could not start
//   held       every threshold passed and at most 1% of the hold's
//              iterations were dropped: the server kept up with RATE
//   drain_s    issue_drain_seconds (null on the bare baseline, or when the
//              campaign never turned consistent)
//   req_ratio  (with BASELINE) req_per_s / the baseline's req_per_s
//   base_urls  the base URLs the requests went to

import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import exec from 'k6/execution';
import {
  baseURLs,
  envDuration,
  envInt,
  getJSON,
  json,
  newRunId,
  nonEmpty,
  pollUntil,
  postJSON,
  requireLoopback,
  requireReady,
  requireUp,
} from './lib.js';

const STOCK = envInt('STOCK', 5000, 1, 10000000);
const USERS = envInt('USERS', 50000, 1, 100000000);
const RATE = envInt('RATE', 1000, 1, 50000);
const DURATION = envDuration('DURATION', '20s');
// VUS > 0: closed loop (see the header): VUS users send requests back to
// back, and req_per_s is the most the server answered.
const VUS = envInt('VUS', 0, 0, 1000);
const CLOSED = VUS > 0;

const LABEL = __ENV.LABEL || 'sagaflow';
// Where the requests go, turn by turn; setup and teardown talk to the first.
const BASES = baseURLs();
const FIRST = BASES[0];
// The baseline's figures, read in the init context (open() works only there).
const BASELINE = __ENV.BASELINE ? JSON.parse(open(__ENV.BASELINE)) : null;

const RAMP = '10s';
const RAMP_MS = 10000;
const BARE_ID = 'bare'; // the id loadtest/bare gives every campaign
const DRAIN_TRIES = 60; // 60 x 0.5 s = 30 s
const DRAIN_INTERVAL = 0.5; // seconds
const SAMPLE_USERS = 10; // coupons looked up in teardown
const WARN_PER_VU = 3; // unexpected answers logged per VU, not to flood the output

const couponAnswered = new Rate('coupon_answered');
const couponAccepted = new Counter('coupon_accepted');
const couponDuplicate = new Counter('coupon_duplicate');
const couponSoldOut = new Counter('coupon_sold_out');
const couponClosed = new Counter('coupon_closed');
const campaignConsistent = new Rate('campaign_consistent');
const issueDrain = new Trend('issue_drain_seconds');

// The open loop offers RATE requests/s whatever the server does; the
// closed loop offers as many as VUS users get answered.
const openLoop = {
  executor: 'ramping-arrival-rate',
  exec: 'request',
  startRate: 0,
  timeUnit: '1s',
  stages: [
    { target: RATE, duration: RAMP },
    { target: RATE, duration: DURATION },
  ],
  // A request takes ~1 ms, so a handful of VUs are busy at a time; the
  // rest absorb stalls (GC, a busy CPU) without dropping iterations:
  // RATE/10 VUs cover a 100 ms stall, RATE/4 (at most 1000) 250 ms.
  preAllocatedVUs: Math.max(10, Math.ceil(RATE / 10)),
  maxVUs: Math.min(1000, Math.max(50, Math.ceil(RATE / 4))),
  gracefulStop: '5s',
};
const closedLoop = {
  executor: 'constant-vus',
  exec: 'request',
  vus: VUS,
  duration: `${RAMP_MS / 1000 + seconds(DURATION)}s`,
  gracefulStop: '5s',
};

export const options = {
  scenarios: { requests: CLOSED ? closedLoop : openLoop },
  thresholds: {
    // The closed loop measures how many requests are answered, not how
    // fast: its latency is whatever VUS requests in flight make it.
    // (Always true there: makes the latency appear in the summary data.)
    'http_req_duration{name:coupon_request}': [CLOSED ? 'p(99)>=0' : 'p(99)<20'],
    coupon_answered: ['rate>0.999'],
    campaign_consistent: ['rate>=1'],
    // Always true; make the counts appear in the summary data.
    'http_reqs{name:coupon_request,phase:hold}': ['count>=0'],
    'http_reqs{name:coupon_request}': ['count>=0'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  userAgent: 'sagaflow-loadtest/coupon (k6)',
  setupTimeout: '30s',
  teardownTimeout: '60s',
};

export function setup() {
  for (const base of BASES) {
    requireLoopback(base);
    requireUp(base);
    requireReady({ base });
  }

  const runId = newRunId();
  const now = Date.now();
  const res = postJSON(
    '/v1/campaigns',
    {
      name: `loadtest coupon ${runId}`,
      stock: STOCK,
      starts_at: new Date(now - 1000).toISOString(),
      ends_at: new Date(now + 10 * 60 * 1000).toISOString(),
    },
    'campaign_create',
    { expect: 201, base: FIRST },
  );
  const c = json(res);
  if (res.status !== 201 || c === null || !nonEmpty(c.id)) {
    exec.test.abort(`POST /v1/campaigns failed: HTTP ${res.status} ${String(res.body).slice(0, 500)}`);
  }
  const bare = c.id === BARE_ID;
  console.log(
    `run ${runId}: campaign ${c.id}${bare ? ' (bare baseline: no teardown checks)' : ''}, stock ${STOCK}; ` +
      (CLOSED
        ? `${VUS} VUs back to back for ${RAMP} + ${DURATION}`
        : `0 -> ${RATE} requests/s over ${RAMP}, then ${RATE}/s for ${DURATION}`) +
      `, from ${USERS} users, to ${BASES.join(' ')}`,
  );
  return { runId, id: c.id, bare };
}

let warnings = 0; // per VU

// requests: one POST /v1/campaigns/{id}/requests for a random user.
export function request(data) {
  const user = `${data.runId}-u${Math.floor(Math.random() * USERS)}`;
  const phase = Date.now() - exec.scenario.startTime < RAMP_MS ? 'ramp' : 'hold';
  const base = BASES[exec.scenario.iterationInTest % BASES.length];
  const res = postJSON(
    `/v1/campaigns/${encodeURIComponent(data.id)}/requests`,
    { user_id: user },
    'coupon_request',
    { expect: [202, 409, 410], tags: { phase }, timeout: '5s', base },
  );
  const b = json(res);
  const code = b !== null && b.error !== null && typeof b.error === 'object' ? b.error.code : undefined;

  const answered = res.status === 202 || res.status === 409 || res.status === 410;
  couponAnswered.add(answered);
  if (res.status === 202) {
    couponAccepted.add(1);
  } else if (res.status === 409) {
    couponDuplicate.add(1);
  } else if (res.status === 410 && code === 'sold_out') {
    couponSoldOut.add(1);
  } else if (res.status === 410 && code === 'closed') {
    couponClosed.add(1);
  }

  const shapeOK = check(res, {
    'request: status 202, 409 or 410': () => answered,
    'request: body matches the status': () => bodyMatches(res.status, b, code),
  });
  if (!data.bare && res.status === 202) {
    check(b, { 'request: accepted rank <= STOCK': (x) => x !== null && x.rank <= STOCK });
  }
  if (!answered || !shapeOK) {
    warn(`request for ${user} to ${base}: HTTP ${res.status} ${res.error || ''} ${String(res.body).slice(0, 300)}`);
  }
}

function bodyMatches(status, b, code) {
  if (b === null) {
    return false;
  }
  switch (status) {
    case 202:
      return b.status === 'accepted' && Number.isInteger(b.rank) && b.rank >= 1;
    case 409:
      return code === 'already_requested' && Number.isInteger(b.rank) && b.rank >= 1;
    case 410:
      return code === 'sold_out' || code === 'closed';
    default:
      return false;
  }
}

// teardown: every accepted request got its coupon, and no more than STOCK
// were accepted. Skipped on the bare baseline.
export function teardown(data) {
  if (!data || data.bare) {
    return;
  }
  const path = `/v1/campaigns/${encodeURIComponent(data.id)}`;
  const poll = pollUntil(
    () => getJSON(path, 'campaign_get', { timeout: '5s', base: FIRST }),
    (res) => {
      const c = res.status === 200 ? json(res) : null;
      return c !== null && (c.status === 'done' || (Number.isInteger(c.issued) && c.issued === c.accepted));
    },
    { tries: DRAIN_TRIES, interval: DRAIN_INTERVAL },
  );
  const c = poll.value.status === 200 ? json(poll.value) : null;
  const ok =
    poll.ok &&
    c !== null &&
    Number.isInteger(c.issued) &&
    Number.isInteger(c.accepted) &&
    c.issued === c.accepted &&
    c.accepted <= STOCK;
  campaignConsistent.add(ok);
  if (poll.ok) {
    issueDrain.add(poll.elapsedMs / 1000);
  }
  check(c, {
    'campaign: issued == accepted': (x) => x !== null && x.issued === x.accepted,
    'campaign: accepted <= stock': (x) => x !== null && Number.isInteger(x.accepted) && x.accepted <= STOCK,
    'campaign: done -> accepted == stock': (x) => x !== null && (x.status !== 'done' || x.accepted === STOCK),
  });
  const seen = c !== null ? JSON.stringify(c) : `HTTP ${poll.value.status} ${String(poll.value.body).slice(0, 300)}`;
  if (ok) {
    console.log(`run ${data.runId}: campaign ${data.id} consistent after ${(poll.elapsedMs / 1000).toFixed(1)} s: ${seen}`);
  } else {
    console.warn(`run ${data.runId}: campaign ${data.id} not consistent after ${poll.tries} polls: ${seen}`);
  }

  // A few users' coupons: issued ones have a code and a rank within the stock.
  const done = c !== null && c.status === 'done';
  for (let i = 0; i < SAMPLE_USERS; i++) {
    const res = getJSON(`${path}/coupons/${data.runId}-u${i}`, 'coupon_get', { timeout: '5s', base: FIRST });
    const k = res.status === 200 ? json(res) : null;
    check(k, {
      'coupon: GET 200 with a status': (x) => x !== null && ['issued', 'pending', 'none'].includes(x.status),
      'coupon: issued -> CPN- code and rank <= STOCK': (x) =>
        x === null || x.status !== 'issued' || (nonEmpty(x.code) && x.code.startsWith('CPN-') && x.rank >= 1 && x.rank <= STOCK),
      'coupon: done -> none pending': (x) => x === null || !done || x.status !== 'pending',
    });
  }
}

function warn(msg) {
  if (warnings < WARN_PER_VU) {
    console.warn(msg);
  }
  warnings++;
}

// seconds('1m30s') -> 90: a k6 duration (envDuration checked its form).
function seconds(d) {
  let t = 0;
  for (const [, n, unit] of d.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    t += Number(n) * { ms: 0.001, s: 1, m: 60, h: 3600 }[unit];
  }
  return t;
}

// figures(data) -> this run's figures from k6's end-of-test summary.
export function figures(data) {
  const m = data.metrics;
  const value = (name, stat) => (m[name] && m[name].values[stat] !== undefined ? m[name].values[stat] : null);
  const holdSeconds = seconds(DURATION);
  const served = value('http_reqs{name:coupon_request,phase:hold}', 'count');
  const dropped = value('dropped_iterations', 'count') || 0;
  const thresholdsOK = Object.values(m).every((x) => Object.values(x.thresholds || {}).every((t) => t.ok));
  const f = {
    label: LABEL,
    rate: CLOSED ? null : RATE,
    vus: CLOSED ? VUS : null,
    duration_s: holdSeconds,
    req_per_s: served === null ? null : Math.round(served / holdSeconds),
    requests: value('http_reqs{name:coupon_request}', 'count'),
    p50_ms: value('http_req_duration{name:coupon_request}', 'med'),
    p99_ms: value('http_req_duration{name:coupon_request}', 'p(99)'),
    dropped,
    thresholds_ok: thresholdsOK,
    held: thresholdsOK && (CLOSED || dropped <= 0.01 * RATE * holdSeconds),
    drain_s: value('issue_drain_seconds', 'max'),
    req_ratio: null,
    base_urls: BASES,
  };
  if (BASELINE && typeof f.req_per_s === 'number' && typeof BASELINE.req_per_s === 'number' && BASELINE.req_per_s > 0) {
    f.req_ratio = f.req_per_s / BASELINE.req_per_s;
  }
  return f;
}

function fixed(x) {
  return typeof x === 'number' ? x.toFixed(2) : 'n/a';
}

function ratio(a, b) {
  return typeof a === 'number' && typeof b === 'number' && b > 0 ? (a / b).toFixed(2) : 'n/a';
}

// handleSummary replaces k6's end-of-test text with the figures: one line
// per run (the baseline's first when BASELINE is set, then the ratios), and
// writes them to FIGURES.
export function handleSummary(data) {
  const f = figures(data);
  const line = (x) =>
    `${x.label.padEnd(16)} ${String(x.req_per_s).padStart(8)} ${fixed(x.p50_ms).padStart(10)} ${fixed(x.p99_ms).padStart(10)} ` +
    `${String(x.dropped).padStart(8)} ${(x.held ? 'held' : 'not held').padStart(9)}`;
  const rows = [
    CLOSED
      ? `\ncoupon requests, closed loop: ${VUS} VUs back to back for ${DURATION} (after ${RAMP} of warm-up)`
      : `\ncoupon requests, RATE=${RATE}/s held for ${DURATION} (after a ${RAMP} ramp)`,
    `${''.padEnd(16)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(10)} ${'p99 ms'.padStart(10)} ${'dropped'.padStart(8)} ${''.padStart(9)}`,
  ];
  if (BASELINE) {
    rows.push(line(BASELINE));
  }
  rows.push(line(f));
  if (BASELINE) {
    rows.push(
      `${`${f.label}/${BASELINE.label}`.padEnd(16)} ${ratio(f.req_per_s, BASELINE.req_per_s).padStart(8)} ` +
        `${ratio(f.p50_ms, BASELINE.p50_ms).padStart(10)} ${ratio(f.p99_ms, BASELINE.p99_ms).padStart(10)}`,
    );
  }
  const out = { stdout: `${rows.join('\n')}\n` };
  if (__ENV.FIGURES) {
    out[__ENV.FIGURES] = JSON.stringify(f);
    out[`${__ENV.FIGURES}.env`] =
      `held=${f.held ? 1 : 0}\nrate=${f.rate}\nreq_per_s=${f.req_per_s}\nrequests=${f.requests}\np50_ms=${fixed(f.p50_ms)}\np99_ms=${fixed(f.p99_ms)}\n` +
      `drain_s=${fixed(f.drain_s)}\nreq_ratio=${fixed(f.req_ratio)}\n`;
  }
  return out;
}
