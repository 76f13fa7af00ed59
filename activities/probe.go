package activities

import (
	"context"
	"fmt"
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

// ProbeActivities are the probe's activities, run on the ops task queue;
// the workflow refers to them through a nil *ProbeActivities. Safe for
// concurrent use when its fields are.
type ProbeActivities struct {
	Postgres SchemaChecker
	Redis    Pinger
	RabbitMQ Pinger
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
func (a *ProbeActivities) CheckDependency(ctx context.Context, in CheckInput) (CheckResult, error) {
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
