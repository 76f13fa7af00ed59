package telemetry

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// other is the label value of a reason outside the known set, so that an
// unexpected text never becomes a series of its own.
const other = "other"

// JoinMetrics count the join saga's ends and its payments' uncertain
// moments. Safe for concurrent use.
type JoinMetrics struct {
	reasons       []string
	outcomes      *prometheus.CounterVec
	compensations *prometheus.CounterVec
	lateRefunds   prometheus.Counter
	unknown       *prometheus.CounterVec
	settlements   *prometheus.CounterVec
}

// NewJoinMetrics registers the join's counters in m; reasons are the
// saga's failure reasons (workflows.Reason*), any other reason is counted
// as "other".
func NewJoinMetrics(m *Metrics, reasons ...string) *JoinMetrics {
	j := &JoinMetrics{
		reasons: slices.Clone(reasons),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sagaflow_join_outcomes_total",
			Help: "Joins that reached an end state (confirmed, failed: nothing to undo, compensated: undone), by outcome and reason (empty when confirmed). A confirmed join cancelled later counts again as compensated.",
		}, []string{"outcome", "reason"}),
		compensations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sagaflow_join_compensations_total",
			Help: "Joins compensated (seat released, money refunded), by the reason of the failure or cancel.",
		}, []string{"reason"}),
		lateRefunds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sagaflow_join_late_refunds_total",
			Help: "Compensated joins whose charge was found applied only when settled after its outcome was unknown, and refunded.",
		}),
		unknown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sagaflow_payment_unknown_outcomes_total",
			Help: "Charges whose reply was lost (timeout, 5xx), by what the lookup that followed found (applied, not_applied, lookup_failed).",
		}, []string{"resolution"}),
		settlements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sagaflow_payment_settlements_total",
			Help: "Charges settled by their key after their retries ran out or in a compensation (call: void, lookup), by status found (succeeded, declined, voided, refunded, none, error).",
		}, []string{"call", "status"}),
	}
	m.Registry.MustRegister(j.outcomes, j.compensations, j.lateRefunds, j.unknown, j.settlements)
	return j
}

func (j *JoinMetrics) reason(r string) string {
	if r == "" || slices.Contains(j.reasons, r) {
		return r
	}
	return other
}

// Ended counts a join that reached outcome (a meeting.Join status) for
// reason; a compensated one also counts in the compensations, and as a
// late refund if lateRefund.
func (j *JoinMetrics) Ended(outcome, reason string, lateRefund bool) {
	r := j.reason(reason)
	j.outcomes.WithLabelValues(outcome, r).Inc()
	if outcome != "compensated" {
		return
	}
	j.compensations.WithLabelValues(r).Inc()
	if lateRefund {
		j.lateRefunds.Inc()
	}
}

// UnknownOutcome counts a charge whose reply was lost, by what its lookup
// found.
func (j *JoinMetrics) UnknownOutcome(resolution string) { j.unknown.WithLabelValues(resolution).Inc() }

// Settled counts a settlement by call ("void", "lookup") that found status.
func (j *JoinMetrics) Settled(call, status string) { j.settlements.WithLabelValues(call, status).Inc() }
