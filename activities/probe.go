// Package activities holds the side effects of sagaflow's workflows. Each
// activity is a method on Activities, whose fields are the process's clients,
// built once per process; the workflows refer to the methods through a nil
// *Activities. One input and one result struct per activity.
package activities

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/sdk/temporal"
)

// Dependencies a probe checks.
const (
	DependencyPostgres = "postgres"
	DependencyRedis    = "redis"
	DependencyRabbitMQ = "rabbitmq"
)

// Pinger is anything that can tell whether its server answers.
type Pinger interface {
	Ping(ctx context.Context) error
}

// SchemaChecker tells whether a PostgreSQL schema exists.
type SchemaChecker interface {
	SchemaExists(ctx context.Context, schema string) (bool, error)
}

// Activities carries the clients activities use. Safe for concurrent use
// when its fields are.
type Activities struct {
	Postgres SchemaChecker
	Redis    Pinger
	RabbitMQ Pinger
	// Meetings returns the meeting store of the tenant whose schema it is.
	Meetings func(schema string) MeetingStore
	Payments PaymentGateway
	// JoinMetrics counts the joins' ends and uncertain charges; nil: none.
	JoinMetrics JoinMetrics
	Notifier    Notifier
	// Campaigns returns the campaign store of the tenant whose schema it is.
	Campaigns func(schema string) CampaignStore
	Queue     FirstCome
	// CouponMetrics counts the campaigns' issued and set-aside requests;
	// nil: none.
	CouponMetrics CouponMetrics
	// IssueLimit bounds each tenant's issuing activities; nil: no bound.
	IssueLimit *TenantLimit
	// Catalog returns the catalog store of the tenant whose schema it is.
	Catalog func(schema string) CatalogStore
	Markets Markets
	// SyncMetrics counts pushes and parked items; nil: none.
	SyncMetrics SyncMetrics
	// Secrets opens the payment tokens the API sealed; nil leaves a sealed
	// token sealed (and the charge fails for good).
	Secrets Opener
	// Log receives the alerts activities raise; nil means slog.Default.
	Log *slog.Logger
}

// CheckInput names the dependency to check and, for PostgreSQL, the tenant
// schema that must exist.
type CheckInput struct {
	Dependency string `json:"dependency"`
	Tenant     string `json:"tenant"`
	Schema     string `json:"schema"`
}

// CheckResult is one dependency's answer.
type CheckResult struct {
	Dependency string `json:"dependency"`
	OK         bool   `json:"ok"`
	LatencyMS  int64  `json:"latency_ms"`
	Error      string `json:"error,omitempty"`
}

// CheckDependency checks that one dependency answers. An unreachable server
// is returned as an error (retried by policy); a tenant schema that does not
// exist, or an unknown dependency, is not retryable.
func (a *Activities) CheckDependency(ctx context.Context, in CheckInput) (CheckResult, error) {
	start := time.Now()
	var err error
	switch in.Dependency {
	case DependencyPostgres:
		var ok bool
		ok, err = a.Postgres.SchemaExists(ctx, in.Schema)
		if err == nil && !ok {
			return CheckResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("schema %q of tenant %s does not exist", in.Schema, in.Tenant), "SchemaMissing", nil)
		}
	case DependencyRedis:
		err = a.Redis.Ping(ctx)
	case DependencyRabbitMQ:
		err = a.RabbitMQ.Ping(ctx)
	default:
		return CheckResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("unknown dependency %q", in.Dependency), "BadInput", nil)
	}
	if err != nil {
		return CheckResult{}, fmt.Errorf("check %s: %w", in.Dependency, err)
	}
	return CheckResult{Dependency: in.Dependency, OK: true, LatencyMS: time.Since(start).Milliseconds()}, nil
}
