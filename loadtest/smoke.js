// smoke.js — k6 smoke test of a running sagaflow stack.
//
// What it tests (about 30 s, bounded in time and iterations, traffic only to
// BASE_URL, which must be loopback unless ALLOW_NON_LOOPBACK=true):
//   setup    GET /healthz must answer (else the run aborts, exit code 108),
//            GET /readyz must turn 200 within ~5 s, i.e. Temporal, Postgres,
//            Redis and RabbitMQ are reachable (else abort, printing the
//            503 body that names what is down).
//   healthz  GET /healthz at a constant 200 req/s for 20 s:
//            200 {"status":"ok"}, p(95) < 50 ms, < 1 % failed.
//   probes   10 probe workflows (2 VUs): POST /v1/probes {} -> 202
//            {"workflow_id","run_id"}, then GET /v1/workflows/{id} every
//            0.2 s (at most 75 polls, ~15 s) until status is COMPLETED.
//            Checks the workflow document; metrics
//              probe_start_to_complete_ms  POST sent -> COMPLETED seen, p(95) < 5000
//              probe_completed             share of probes that completed, > 0.99
//              probe_workflow_duration_ms  close_time - start_time (informational)
//   auth     /v1 without a bearer key -> 401 {"error":{"code":"unauthenticated",
//            "message":"..."}}, also with a wrong key and on GET; an unknown
//            workflow id -> 404. With OTHER_API_KEY (a second tenant's key)
//            set, also checks that tenant cannot read our probe (-> 404).
// Every request carries a `name` tag (healthz, readyz, probes_start,
// workflow_get, probes_unauth, probes_badkey, workflow_get_unauth,
// workflow_get_unknown, workflow_get_other_tenant) so thresholds are per
// endpoint.
//
// How to run (stack up and `sagaflow dev` listening):
//   make loadtest                          # = loadtest/k6.sh loadtest/smoke.js
//   loadtest/k6.sh loadtest/smoke.js       # same, directly
//   BASE_URL=http://127.0.0.1:9090 API_KEY=other loadtest/k6.sh loadtest/smoke.js
// k6.sh builds the pinned k6 into bin/k6 the first time, and writes an HTML
// report to .data/reports/smoke-<UTC timestamp>.html.
// Exit code: 0 pass, 99 a threshold failed, 108 aborted in setup (stack down).
//
// Environment (given to k6 with -e; k6.sh passes BASE_URL and API_KEY):
//   BASE_URL       default http://127.0.0.1:8080
//   API_KEY        default demo-key
//   OTHER_API_KEY  optional second tenant's key, enables the cross-tenant 404 check
//   ALLOW_NON_LOOPBACK=true  allow a BASE_URL that is not 127.0.0.0/8, localhost or [::1]

import { check } from 'k6';
import { Rate, Trend } from 'k6/metrics';
import exec from 'k6/execution';
import {
  BASE_URL,
  TERMINAL_STATUSES,
  getJSON,
  isJSON,
  json,
  msBetween,
  pollUntil,
  postJSON,
  requireLoopback,
  requireUp,
} from './lib.js';

const POLL_TRIES = 75; // 75 x 0.2 s ~ 15 s, well over the 5 s threshold
const POLL_INTERVAL = 0.2; // seconds

const probeStartToComplete = new Trend('probe_start_to_complete_ms', true);
const probeWorkflowDuration = new Trend('probe_workflow_duration_ms', true);
const probeCompleted = new Rate('probe_completed');

export const options = {
  scenarios: {
    healthz: {
      executor: 'constant-arrival-rate',
      exec: 'healthz',
      rate: 200,
      timeUnit: '1s',
      duration: '20s',
      preAllocatedVUs: 20,
      maxVUs: 50,
      gracefulStop: '5s',
    },
    probes: {
      executor: 'shared-iterations',
      exec: 'probe',
      vus: 2,
      iterations: 10,
      maxDuration: '25s',
      gracefulStop: '5s',
    },
    auth: {
      executor: 'per-vu-iterations',
      exec: 'auth',
      vus: 1,
      iterations: 1,
      maxDuration: '20s',
      gracefulStop: '5s',
    },
  },
  thresholds: {
    // (a) health endpoint under a constant 200 req/s
    'http_req_duration{name:healthz}': ['p(95)<50'],
    'http_req_failed{name:healthz}': ['rate<0.01'],
    'checks{scenario:healthz}': ['rate>0.99'],
    // (b) probe workflows, end to end
    probe_start_to_complete_ms: ['p(95)<5000'],
    probe_completed: ['rate>0.99'],
    'http_req_duration{name:probes_start}': ['p(95)<1000'],
    'http_req_failed{name:probes_start}': ['rate<0.01'],
    'http_req_duration{name:workflow_get}': ['p(95)<500'],
    'checks{scenario:probes}': ['rate>0.99'],
    // (c) authentication and tenant isolation: every check must hold
    'checks{scenario:auth}': ['rate==1'],
    // everything (requests meant to return 401/404 are marked expected)
    http_req_failed: ['rate<0.01'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  userAgent: 'sagaflow-loadtest/smoke (k6)',
  setupTimeout: '30s',
};

export function setup() {
  requireLoopback();
  requireUp();
  const ready = pollUntil(
    () => getJSON('/readyz', 'readyz', { auth: false, expect: [200, 503] }),
    (res) => res.status === 200,
    { tries: 25, interval: 0.2 },
  );
  if (!ready.ok) {
    const res = ready.value;
    exec.test.abort(
      `${BASE_URL}/readyz is not ready after ${ready.tries} tries: HTTP ${res.status} ${String(res.body).slice(0, 500)}`,
    );
  }
  return {};
}

// (a) GET /healthz
export function healthz() {
  const res = getJSON('/healthz', 'healthz', { auth: false });
  check(res, {
    'healthz: status 200': (r) => r.status === 200,
    'healthz: body {"status":"ok"}': (r) => {
      const b = json(r);
      return b !== null && b.status === 'ok';
    },
  });
}

// (b) POST /v1/probes, then poll GET /v1/workflows/{id} until COMPLETED.
export function probe() {
  const started = Date.now();
  const res = postJSON('/v1/probes', {}, 'probes_start', { expect: 202 });
  const body = json(res);
  const startedOK = check(res, {
    'probes: POST 202': (r) => r.status === 202,
    'probes: POST returns workflow_id and run_id': () =>
      body !== null && nonEmpty(body.workflow_id) && nonEmpty(body.run_id),
  });
  if (!startedOK || body === null || !nonEmpty(body.workflow_id)) {
    probeCompleted.add(false);
    console.warn(`probe start failed: HTTP ${res.status} ${String(res.body).slice(0, 300)}`);
    return;
  }

  const path = `/v1/workflows/${encodeURIComponent(body.workflow_id)}`;
  const poll = pollUntil(
    () => getJSON(path, 'workflow_get'),
    (r) => {
      const w = r.status === 200 ? json(r) : null;
      return w !== null && TERMINAL_STATUSES.includes(w.status);
    },
    { tries: POLL_TRIES, interval: POLL_INTERVAL },
  );
  const elapsed = Date.now() - started;
  const wf = json(poll.value);
  const completed = poll.ok && wf !== null && wf.status === 'COMPLETED';

  check(poll.value, {
    'probes: GET workflow 200': (r) => r.status === 200,
    'probes: workflow COMPLETED': () => completed,
    'probes: workflow_id/run_id match': () =>
      wf !== null && wf.workflow_id === body.workflow_id && wf.run_id === body.run_id,
    'probes: type and task_queue set': () => wf !== null && nonEmpty(wf.type) && nonEmpty(wf.task_queue),
    'probes: start_time and close_time set': () => wf !== null && nonEmpty(wf.start_time) && nonEmpty(wf.close_time),
    'probes: state is an object': () => wf !== null && wf.state !== null && typeof wf.state === 'object',
  });

  probeCompleted.add(completed);
  if (completed) {
    probeStartToComplete.add(elapsed);
    const d = msBetween(wf.start_time, wf.close_time);
    if (!Number.isNaN(d)) {
      probeWorkflowDuration.add(d);
    }
  } else {
    const status = wf !== null ? wf.status : `HTTP ${poll.value.status}`;
    console.warn(
      `probe ${body.workflow_id} not COMPLETED after ${poll.tries} polls (${elapsed} ms): ${status} ${String(poll.value.body).slice(0, 300)}`,
    );
  }

  // (c, optional) another tenant must not see this workflow.
  if (__ENV.OTHER_API_KEY) {
    const other = getJSON(path, 'workflow_get_other_tenant', { auth: __ENV.OTHER_API_KEY, expect: 404 });
    check(other, { 'probes: other tenant gets 404': (r) => r.status === 404 });
  }
}

// (c) authentication: /v1 without (or with a wrong) bearer key -> 401 JSON error.
export function auth() {
  const cases = [
    ['POST /v1/probes without key', () => postJSON('/v1/probes', {}, 'probes_unauth', { auth: false, expect: 401 })],
    [
      'POST /v1/probes with wrong key',
      () => postJSON('/v1/probes', {}, 'probes_badkey', { auth: `not-a-key-${Date.now()}`, expect: 401 }),
    ],
    ['GET /v1/workflows/{id} without key', () => getJSON('/v1/workflows/x', 'workflow_get_unauth', { auth: false, expect: 401 })],
  ];
  for (const [label, send] of cases) {
    const res = send();
    const b = json(res);
    check(res, {
      [`auth: ${label} -> 401`]: (r) => r.status === 401,
      [`auth: ${label} -> JSON content type`]: (r) => isJSON(r),
      [`auth: ${label} -> error.code "unauthenticated"`]: () =>
        b !== null && b.error !== null && typeof b.error === 'object' && b.error.code === 'unauthenticated',
      [`auth: ${label} -> error.message set`]: () => b !== null && b.error != null && nonEmpty(b.error.message),
    });
  }

  const unknown = getJSON(`/v1/workflows/smoke-unknown-${Date.now()}`, 'workflow_get_unknown', { expect: 404 });
  check(unknown, { 'auth: unknown workflow id -> 404': (r) => r.status === 404 });
}

function nonEmpty(v) {
  return typeof v === 'string' && v.length > 0;
}
