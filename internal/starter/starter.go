// Package starter sends the workflow starts that requests leave in
// PostgreSQL (sagaflow.workflow_starts, written in the same transaction as
// the request's own rows) to Temporal. It is the transactional outbox of
// workflow starts: the API answers without waiting for Temporal, a crash
// between the two loses nothing, and a Temporal outage only delays starts.
//
// Several starters (one per api process) share the table safely: each claims
// rows with FOR UPDATE SKIP LOCKED. Starting is idempotent by workflow ID,
// so a row started twice (a crash after the start, before the mark) still
// makes one workflow.
//
// A started row keeps no input (the input can carry a secret, such as a
// join's payment token: it is cleared when the row is marked started), and
// is deleted Retention after its start.
package starter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sagaflow/sagaflow/internal/backoff"
	"github.com/sagaflow/sagaflow/internal/pglisten"
	"github.com/sagaflow/sagaflow/internal/tracectx"
	"github.com/sagaflow/sagaflow/internal/valid"
)

// Channel is the PostgreSQL NOTIFY channel that wakes the starters.
const Channel = "sagaflow_workflow_starts"

// Start is one workflow to start.
type Start struct {
	ID           int64
	Tenant       string
	WorkflowID   string
	WorkflowType string
	TaskQueue    string
	Input        json.RawMessage
	Attempts     int
	// Trace is the W3C trace context of the request that recorded the
	// start; the workflow is started in it. Enqueue fills it from its ctx
	// when it is empty.
	Trace tracectx.Carrier
}

// Enqueue records a start in tx; it is sent once tx commits. The start
// carries s.Trace, or else the trace context of ctx's span (the request's):
// the starter starts the workflow in that trace, so the workflow's spans
// are children of the request's. A context that is not valid is not
// stored (the workflow then starts a trace of its own).
func Enqueue(ctx context.Context, tx pgx.Tx, s Start) error {
	if s.Trace.Empty() {
		s.Trace = tracectx.Capture(ctx)
	}
	tc := s.Trace.Clean()
	_, err := tx.Exec(ctx, `INSERT INTO sagaflow.workflow_starts (tenant, workflow_id, workflow_type, task_queue, input, traceparent, tracestate)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (workflow_id) DO NOTHING`, s.Tenant, s.WorkflowID, s.WorkflowType, s.TaskQueue, s.Input, tc.TraceParent, tc.TraceState)
	if err != nil {
		return fmt.Errorf("starter: enqueue %s: %w", s.WorkflowID, err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, Channel); err != nil {
		return fmt.Errorf("starter: notify: %w", err)
	}
	return nil
}

// Temporal starts one workflow and returns its run ID; it must treat
// "already started" as success, with the run ID of the run that holds the
// workflow ID. ctx carries the start's trace context (see Start.Trace) as
// the remote parent of what it traces.
type Temporal interface {
	StartWorkflow(ctx context.Context, s Start) (runID string, err error)
}

// Options tune a Starter. The zero value of each field has a default.
type Options struct {
	// Batch is how many starts one claim takes (default 64).
	Batch int
	// Parallel is how many starts of a batch are sent at once (default 16).
	Parallel int
	// Poll is how often the table is read without a notification (default 1s).
	Poll time.Duration
	// MaxBackoff bounds the wait before retrying a failed start (default 30s).
	MaxBackoff time.Duration
	// Retention is how long a started row is kept, for inspection, before
	// Run deletes it (default 24h).
	Retention time.Duration
	// PruneEvery is how often Run deletes the rows past Retention
	// (default 10m).
	PruneEvery time.Duration
}

// pruneBatch is how many rows one DELETE of Prune removes, so that a large
// backlog is deleted in short transactions.
const pruneBatch = 1000

func (o *Options) setDefaults() {
	if o.Batch <= 0 {
		o.Batch = 64
	}
	if o.Parallel <= 0 {
		o.Parallel = 16
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.Retention <= 0 {
		o.Retention = 24 * time.Hour
	}
	if o.PruneEvery <= 0 {
		o.PruneEvery = 10 * time.Minute
	}
}

// Starter relays pending starts to Temporal. Run it once per process.
type Starter struct {
	pool     *pgxpool.Pool
	temporal Temporal
	log      *slog.Logger
	opts     Options
}

// New returns a Starter over pool.
func New(pool *pgxpool.Pool, t Temporal, log *slog.Logger, o Options) *Starter {
	o.setDefaults()
	return &Starter{pool: pool, temporal: t, log: log, opts: o}
}

// Run sends pending starts until ctx ends: at once when notified, else
// every Poll; and every PruneEvery it deletes the rows started more than
// Retention ago. Errors of one round are logged and retried in the next.
func (s *Starter) Run(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	go s.listen(ctx, wake)
	timer := time.NewTimer(0)
	defer timer.Stop()
	prune := time.NewTicker(s.opts.PruneEvery)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-prune.C:
			if n, err := s.Prune(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("workflow starts: prune failed", "error", err)
			} else if n > 0 {
				s.log.Debug("workflow starts: pruned", "rows", n)
			}
			continue
		case <-wake:
		case <-timer.C:
		}
		for {
			n, err := s.RunOnce(ctx)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("workflow starts: round failed", "error", err)
			}
			if n < s.opts.Batch || err != nil {
				break // drained (or failing): wait for the next wake-up
			}
		}
		timer.Reset(s.opts.Poll)
	}
}

// listen turns NOTIFYs into wake-ups, reconnecting when the connection drops.
func (s *Starter) listen(ctx context.Context, wake chan<- struct{}) {
	pglisten.Listen(ctx, s.pool, Channel, s.opts.Poll, s.log, "workflow starts", nil, func(string) {
		select {
		case wake <- struct{}{}:
		default:
		}
	})
}

// RunOnce claims up to Batch due starts, sends them, and records each
// outcome; it returns how many it claimed.
func (s *Starter) RunOnce(ctx context.Context) (int, error) {
	var claimed int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, tenant, workflow_id, workflow_type, task_queue, input, attempts, traceparent, tracestate
			FROM sagaflow.workflow_starts WHERE started_at IS NULL AND next_attempt <= now()
			ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, s.opts.Batch)
		if err != nil {
			return err
		}
		starts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Start, error) {
			var st Start
			err := r.Scan(&st.ID, &st.Tenant, &st.WorkflowID, &st.WorkflowType, &st.TaskQueue, &st.Input, &st.Attempts, &st.Trace.TraceParent, &st.Trace.TraceState)
			return st, err
		})
		if err != nil {
			return err
		}
		claimed = len(starts)
		runs, errs := s.send(ctx, starts)
		var done []int64
		var doneRuns []string
		for i, st := range starts {
			if errs[i] == nil {
				done = append(done, st.ID)
				doneRuns = append(doneRuns, s.keptRun(st, runs[i]))
				continue
			}
			wait := backoff.Exp(st.Attempts+1, 250*time.Millisecond, s.opts.MaxBackoff)
			s.log.Warn("workflow start failed; will retry", "workflow_id", st.WorkflowID, "attempt", st.Attempts+1, "retry_in", wait, "error", errs[i])
			if _, err := tx.Exec(ctx, `UPDATE sagaflow.workflow_starts SET attempts = attempts + 1, last_error = $2,
				next_attempt = now() + $3::interval WHERE id = $1`, st.ID, errs[i].Error(), wait.String()); err != nil {
				return err
			}
		}
		if len(done) > 0 {
			// The input is not needed again (a started row is never sent
			// again) and may hold a secret: clear it.
			if _, err := tx.Exec(ctx, `UPDATE sagaflow.workflow_starts ws SET started_at = now(), attempts = ws.attempts + 1,
				input = '{}'::jsonb, run_id = d.run_id
				FROM unnest($1::bigint[], $2::text[]) AS d (id, run_id) WHERE ws.id = d.id`, done, doneRuns); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return claimed, fmt.Errorf("starter: %w", err)
	}
	return claimed, nil
}

// Prune deletes the rows started more than Retention ago, in batches, and
// returns how many it deleted. Safe to run in several processes at once.
func (s *Starter) Prune(ctx context.Context) (int64, error) {
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, `DELETE FROM sagaflow.workflow_starts WHERE id IN (
			SELECT id FROM sagaflow.workflow_starts WHERE started_at < now() - $1 * interval '1 second'
			ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)`, s.opts.Retention.Seconds(), pruneBatch)
		if err != nil {
			return total, fmt.Errorf("starter: prune: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneBatch {
			return total, nil
		}
	}
}

// maxRunID is the longest run ID a row keeps (the column's CHECK).
const maxRunID = 255

// keptRun is the run ID st's row keeps: run, or "" for one the column
// could not take (too long, a NUL, not printable ASCII). Such a value would
// fail the mark of the whole batch, which would then be sent again and
// again; the workflow is started all the same, and the row only loses the
// run's name.
func (s *Starter) keptRun(st Start, run string) string {
	if run == "" {
		return ""
	}
	if problem := valid.TokenProblem(run, maxRunID); problem != "" {
		s.log.Warn("starter: the run ID Temporal returned is not kept", "workflow_id", st.WorkflowID, "problem", problem)
		return ""
	}
	return run
}

// send starts the workflows, Parallel at a time, and returns the run ID and
// the error of each.
func (s *Starter) send(ctx context.Context, starts []Start) ([]string, []error) {
	runs, errs := make([]string, len(starts)), make([]error, len(starts))
	sem := make(chan struct{}, s.opts.Parallel)
	var wg sync.WaitGroup
	for i, st := range starts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			// The request's context, not the starter's: the start (and so
			// the workflow) joins the request's trace. One with none (or not
			// valid) starts a new root.
			sctx, cancel := context.WithTimeout(st.Trace.Context(ctx), 10*time.Second)
			defer cancel()
			runs[i], errs[i] = s.temporal.StartWorkflow(sctx, st)
			if errs[i] == nil && ctx.Err() != nil {
				errs[i] = errors.New("stopping")
			}
		})
	}
	wg.Wait()
	return runs, errs
}
