package activities

import (
	"context"
	"errors"
	"testing"

	"go.temporal.io/sdk/temporal"
)

type fakePinger struct{ err error }

func (f fakePinger) Ping(context.Context) error { return f.err }

type fakeSchemas map[string]bool

func (f fakeSchemas) SchemaExists(_ context.Context, schema string) (bool, error) {
	return f[schema], nil
}

func TestCheckDependency(t *testing.T) {
	a := &ProbeActivities{
		Postgres: fakeSchemas{"tenant_demo": true},
		Redis:    fakePinger{},
		RabbitMQ: fakePinger{err: errors.New("connection refused")},
	}
	tests := []struct {
		name         string
		in           CheckInput
		ok           bool
		nonRetryable bool
	}{
		{"schema_exists", CheckInput{Dependency: DependencyPostgres, Tenant: "demo", Schema: "tenant_demo"}, true, false},
		{"schema_missing_is_permanent", CheckInput{Dependency: DependencyPostgres, Tenant: "x", Schema: "tenant_x"}, false, true},
		{"redis_answers", CheckInput{Dependency: DependencyRedis}, true, false},
		{"rabbitmq_down_is_retried", CheckInput{Dependency: DependencyRabbitMQ}, false, false},
		{"unknown_dependency_is_permanent", CheckInput{Dependency: "kafka"}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := a.CheckDependency(context.Background(), tt.in)
			if tt.ok {
				if err != nil || !res.OK || res.Dependency != tt.in.Dependency {
					t.Fatalf("= %+v, %v; want ok", res, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("= %+v; want an error", res)
			}
			var appErr *temporal.ApplicationError
			isPermanent := errors.As(err, &appErr) && appErr.NonRetryable()
			if isPermanent != tt.nonRetryable {
				t.Fatalf("error %v: non-retryable = %v, want %v", err, isPermanent, tt.nonRetryable)
			}
		})
	}
}
