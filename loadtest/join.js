// join.js — k6 load test of the join-a-paid-meeting saga on a running
// sagaflow stack.
//
// What it tests (about 60 s with the defaults, bounded in time and
// iterations, traffic only to BASE_URL, which must be loopback unless
// ALLOW_NON_LOOPBACK=true):
//   setup     GET /healthz must answer and GET /readyz must turn 200 within
//             ~5 s (else abort, exit code 108); then creates MEETINGS
//             meetings (POST /v1/meetings, capacity CAPACITY, fee 10000 KRW)
//             and picks a run id, so that users and Idempotency-Keys are
//             unique to this run.
//   joins     JOIN_RATE joins/s for DURATION (constant-arrival-rate):
//             POST /v1/meetings/{id}/joins with a unique Idempotency-Key and
//             a unique user, to the meetings in turn (round-robin); token
//             tok_ok, except tok_decline for DECLINE_PCT % of the users
//             (spread evenly), so refunds and seat releases happen under
//             load. Checks 202 {"join_id","status":"pending"}. The same
//             iteration then polls GET /v1/joins/{join_id} every 0.25 s (at
//             most 80 polls, ~20 s) until confirmed, compensated or failed.
//             Metrics:
//               join_post_to_terminal_ms  POST sent -> terminal status seen, p(95) < 5000
//               join_terminal             share of joins that ended within the poll budget, > 0.99
//               join_confirmed / join_compensated / join_failed   counts of final statuses
//               join_outcome_expected     share that ended as they should, > 0.99:
//                                         tok_decline -> compensated, reason payment_declined;
//                                         tok_ok      -> confirmed;
//                                         either      -> failed, reason meeting_full (once
//                                                        seats run out: CAPACITY*MEETINGS
//                                                        < JOIN_RATE*DURATION)
//   teardown  GET /v1/meetings/{id} for every meeting, polling (at most 20
//             rounds, 0.5 s apart) until each has reserved == 0 and
//             confirmed <= capacity: no seat is left half-taken once every
//             saga has ended, and no meeting is overbooked. Rate
//             meeting_consistent must be 1.
// Every request carries a `name` tag (healthz, readyz, meeting_create,
// join_post, join_get, meeting_get) so thresholds are per endpoint.
//
// How to run (stack up and `sagaflow dev` listening):
//   make loadtest-join                        # = loadtest/k6.sh loadtest/join.js
//   loadtest/k6.sh loadtest/join.js           # same, directly
//   DURATION=10s JOIN_RATE=50 loadtest/k6.sh loadtest/join.js
//   loadtest/k6.sh loadtest/join.js -e CAPACITY=5 -e MEETINGS=2   # meetings fill up
// k6.sh writes an HTML report to .data/reports/join-<UTC timestamp>.html.
// Exit code: 0 pass, 99 a threshold failed, 108 aborted in setup (stack down),
// 107 a bad environment value.
//
// Environment (k6 reads the variables below from the environment, or from
// `-e NAME=value` after the script on the k6.sh command line; k6.sh passes
// BASE_URL and API_KEY):
//   BASE_URL     default http://127.0.0.1:8080
//   API_KEY      default demo-key
//   MEETINGS     meetings to create, default 10
//   CAPACITY     seats per meeting, default 100
//   JOIN_RATE    joins started per second, default 20
//   DURATION     how long joins are started, default 30s (k6 duration)
//   DECLINE_PCT  % of users paying with tok_decline, 0..100, default 10
//   ALLOW_NON_LOOPBACK=true  allow a BASE_URL that is not 127.0.0.0/8, localhost or [::1]

import { check, sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import exec from 'k6/execution';
import { envDuration, envInt, getJSON, json, pollUntil, postJSON, requireLoopback, requireReady, requireUp } from './lib.js';

const MEETINGS = envInt('MEETINGS', 10, 1, 1000);
const CAPACITY = envInt('CAPACITY', 100, 1, 1000000);
const JOIN_RATE = envInt('JOIN_RATE', 20, 1, 10000);
const DECLINE_PCT = envInt('DECLINE_PCT', 10, 0, 100);
const DURATION = envDuration('DURATION', '30s');

const FEE = { amount: 10000, currency: 'KRW' };
const TOKEN_OK = 'tok_ok';
const TOKEN_DECLINE = 'tok_decline';
const POLL_TRIES = 80; // 80 x 0.25 s = 20 s, well over the 5 s threshold
const POLL_INTERVAL = 0.25; // seconds
const JOIN_TERMINAL = ['confirmed', 'compensated', 'failed'];
const WARN_PER_VU = 3; // unexpected outcomes logged per VU, not to flood the output

const joinPostToTerminal = new Trend('join_post_to_terminal_ms', true);
const joinTerminal = new Rate('join_terminal');
const joinOutcomeExpected = new Rate('join_outcome_expected');
const joinFinal = {
  confirmed: new Counter('join_confirmed'),
  compensated: new Counter('join_compensated'),
  failed: new Counter('join_failed'),
};
const meetingConsistent = new Rate('meeting_consistent');

export const options = {
  scenarios: {
    joins: {
      executor: 'constant-arrival-rate',
      exec: 'join',
      rate: JOIN_RATE,
      timeUnit: '1s',
      duration: DURATION,
      // An iteration lives until its saga ends: ~1 s normally, up to ~20 s
      // of polling at worst, so up to JOIN_RATE*20 iterations at once.
      preAllocatedVUs: Math.max(10, JOIN_RATE * 5),
      maxVUs: Math.max(50, JOIN_RATE * 25),
      // Lets the last joins finish their polling after DURATION.
      gracefulStop: '25s',
    },
  },
  thresholds: {
    'http_req_duration{name:join_post}': ['p(95)<50'],
    'http_req_failed{name:join_post}': ['rate<0.01'],
    'http_req_failed{name:join_get}': ['rate<0.01'],
    join_post_to_terminal_ms: ['p(95)<5000'],
    join_terminal: ['rate>0.99'],
    join_outcome_expected: ['rate>0.99'],
    meeting_consistent: ['rate>=1'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  userAgent: 'sagaflow-loadtest/join (k6)',
  setupTimeout: '30s',
  teardownTimeout: '30s',
};

export function setup() {
  requireLoopback();
  requireUp();
  requireReady();

  const runId = `lt${Date.now().toString(36)}${Math.floor(Math.random() * 36 ** 4).toString(36)}`;
  const meetings = [];
  for (let i = 0; i < MEETINGS; i++) {
    const res = postJSON(
      '/v1/meetings',
      { title: `loadtest join ${runId} #${i + 1}`, capacity: CAPACITY, fee: FEE },
      'meeting_create',
      { expect: 201 },
    );
    const m = json(res);
    if (res.status !== 201 || m === null || !nonEmpty(m.id)) {
      exec.test.abort(`POST /v1/meetings failed: HTTP ${res.status} ${String(res.body).slice(0, 500)}`);
    }
    meetings.push(m.id);
  }
  console.log(
    `run ${runId}: ${MEETINGS} meetings x ${CAPACITY} seats; ${JOIN_RATE} joins/s for ${DURATION}, ${DECLINE_PCT}% ${TOKEN_DECLINE}`,
  );
  return { runId, meetings };
}

let warnings = 0; // per VU

// joins: POST a join, then poll it until the saga ends.
export function join(data) {
  const i = exec.scenario.iterationInTest; // unique across VUs in this scenario
  const meetingId = data.meetings[i % data.meetings.length];
  const token = declines(i) ? TOKEN_DECLINE : TOKEN_OK;
  const userId = `${data.runId}-u${i}`;

  const posted = Date.now();
  const res = postJSON(
    `/v1/meetings/${encodeURIComponent(meetingId)}/joins`,
    { user_id: userId, payment_token: token },
    'join_post',
    { expect: 202, headers: { 'Idempotency-Key': `${data.runId}-join-${i}` }, timeout: '10s' },
  );
  const accepted = json(res);
  const postOK = check(res, {
    'join: POST 202': (r) => r.status === 202,
    'join: POST returns join_id': () => accepted !== null && nonEmpty(accepted.join_id),
  });
  if (!postOK || accepted === null || !nonEmpty(accepted.join_id)) {
    joinTerminal.add(false);
    joinOutcomeExpected.add(false);
    warn(`join POST for ${userId} failed: HTTP ${res.status} ${String(res.body).slice(0, 300)}`);
    return;
  }

  const poll = pollUntil(
    () => getJSON(`/v1/joins/${encodeURIComponent(accepted.join_id)}`, 'join_get', { timeout: '10s' }),
    (r) => {
      const j = r.status === 200 ? json(r) : null;
      return j !== null && JOIN_TERMINAL.includes(j.status);
    },
    { tries: POLL_TRIES, interval: POLL_INTERVAL },
  );
  const elapsed = Date.now() - posted;
  const j = poll.value.status === 200 ? json(poll.value) : null;

  joinTerminal.add(poll.ok);
  if (!poll.ok) {
    joinOutcomeExpected.add(false);
    const status = j !== null ? j.status : `HTTP ${poll.value.status}`;
    warn(`join ${accepted.join_id} (${token}) not terminal after ${poll.tries} polls (${elapsed} ms): ${status}`);
    return;
  }
  joinPostToTerminal.add(elapsed);
  joinFinal[j.status].add(1);

  const fullFail = j.status === 'failed' && j.reason === 'meeting_full';
  const expected =
    token === TOKEN_DECLINE
      ? (j.status === 'compensated' && j.reason === 'payment_declined') || fullFail
      : j.status === 'confirmed' || fullFail;
  joinOutcomeExpected.add(expected);
  if (!expected) {
    warn(`join ${accepted.join_id} (${token}) ended ${j.status} (${j.reason || 'no reason'}): ${String(poll.value.body).slice(0, 300)}`);
  }

  const payment = j.payment !== null && typeof j.payment === 'object' ? j.payment : {};
  check(j, {
    'join: ids match': (x) => x.join_id === accepted.join_id && x.meeting_id === meetingId && x.user_id === userId,
    'join: steps is an array': (x) => Array.isArray(x.steps),
    'join: confirmed -> payment succeeded': (x) => x.status !== 'confirmed' || payment.status === 'succeeded',
    'join: declined -> payment declined': (x) =>
      !(x.status === 'compensated' && x.reason === 'payment_declined') || payment.status === 'declined',
  });
}

// teardown: once every saga ended, no seat is left reserved and no meeting
// is overbooked. Polls all meetings together, at most 20 rounds.
export function teardown(data) {
  let pending = data.meetings.slice();
  const last = {};
  for (let round = 1; round <= 20 && pending.length > 0; round++) {
    if (round > 1) {
      sleep(0.5);
    }
    pending = pending.filter((id) => {
      const res = getJSON(`/v1/meetings/${encodeURIComponent(id)}`, 'meeting_get');
      const m = res.status === 200 ? json(res) : null;
      last[id] = m !== null ? m : { error: `HTTP ${res.status} ${String(res.body).slice(0, 200)}` };
      return !consistent(m);
    });
  }
  let confirmed = 0;
  for (const id of data.meetings) {
    const m = last[id];
    const ok = consistent(m);
    meetingConsistent.add(ok);
    check(m, {
      'meeting: reserved == 0': (x) => x.reserved === 0,
      'meeting: confirmed <= capacity': (x) => typeof x.confirmed === 'number' && x.confirmed <= x.capacity,
    });
    if (ok) {
      confirmed += m.confirmed;
    } else {
      console.warn(`meeting ${id} not consistent after polling: ${JSON.stringify(m)}`);
    }
  }
  console.log(`run ${data.runId}: ${confirmed} seats confirmed in ${data.meetings.length} meetings`);
}

function consistent(m) {
  return (
    m !== null &&
    typeof m === 'object' &&
    m.reserved === 0 &&
    typeof m.confirmed === 'number' &&
    typeof m.capacity === 'number' &&
    m.confirmed >= 0 &&
    m.confirmed <= m.capacity
  );
}

// declines(i): iteration i pays with tok_decline; exactly DECLINE_PCT % of
// any run of 100 consecutive iterations, spread evenly.
function declines(i) {
  return Math.floor(((i + 1) * DECLINE_PCT) / 100) > Math.floor((i * DECLINE_PCT) / 100);
}

function warn(msg) {
  if (warnings < WARN_PER_VU) {
    console.warn(msg);
  }
  warnings++;
}

function nonEmpty(v) {
  return typeof v === 'string' && v.length > 0;
}
