package config

import (
	"strings"
	"testing"
	"time"
)

func TestLoad_defaults_work_for_the_local_stack(t *testing.T) {
	c, err := Load(nil, nil)
	if err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if c.HTTPAddr != ":8080" || c.TemporalNamespace != "sagaflow" || c.ShutdownTimeout != 30*time.Second {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if c.TemporalUIURL != "http://127.0.0.1:8233" || c.OpsStuckAfter != 5*time.Minute {
		t.Fatalf("ops defaults: ui %q, stuck after %s", c.TemporalUIURL, c.OpsStuckAfter)
	}
	if got := c.TemporalHostPort(); got != "127.0.0.1:7233" {
		t.Fatalf("TemporalHostPort = %q, want the embedded server", got)
	}
}

func TestLoad_flags_override_environment(t *testing.T) {
	c, err := Load([]string{"SAGAFLOW_HTTP_ADDR=:9000", "TEMPORAL_ADDRESS=temporal:7233"},
		map[string]string{"SAGAFLOW_HTTP_ADDR": "127.0.0.1:9100"})
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:9100" {
		t.Fatalf("flag did not override env: %q", c.HTTPAddr)
	}
	if c.TemporalHostPort() != "temporal:7233" {
		t.Fatalf("TEMPORAL_ADDRESS ignored: %q", c.TemporalHostPort())
	}
}

func TestLoad_rejects_bad_values_naming_each_variable(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		want    []string
	}{
		{"bad_database_scheme", []string{"DATABASE_URL=mysql://x@h/db"}, []string{"DATABASE_URL"}},
		{"password_is_not_echoed", []string{"AMQP_URL=http://u:secret@h/"}, []string{"AMQP_URL"}},
		{"not_a_duration", []string{"SAGAFLOW_SHUTDOWN_TIMEOUT=soon"}, []string{"SAGAFLOW_SHUTDOWN_TIMEOUT"}},
		{"several_at_once", []string{"SAGAFLOW_LOG_LEVEL=loud", "SAGAFLOW_WORKER_ACTIVITY_POLLERS=0", "SAGAFLOW_HTTP_ADDR=8080"},
			[]string{"SAGAFLOW_LOG_LEVEL", "SAGAFLOW_WORKER_ACTIVITY_POLLERS", "SAGAFLOW_HTTP_ADDR"}},
		{"bad_temporal_address", []string{"TEMPORAL_ADDRESS=nohostport"}, []string{"TEMPORAL_ADDRESS"}},
		{"unknown_temporal_compression", []string{"TEMPORAL_GRPC_COMPRESSION=zstd"}, []string{"TEMPORAL_GRPC_COMPRESSION"}},
		{"temporal_compression_is_case_sensitive", []string{"TEMPORAL_GRPC_COMPRESSION=GZIP"}, []string{"TEMPORAL_GRPC_COMPRESSION"}},
		{"temporal_compression_with_a_nul", []string{"TEMPORAL_GRPC_COMPRESSION=none\x00"}, []string{"TEMPORAL_GRPC_COMPRESSION"}},
		{"hash_tag_in_redis_prefix", []string{"SAGAFLOW_REDIS_PREFIX=app{}:"}, []string{"SAGAFLOW_REDIS_PREFIX"}},
		{"ui_url_not_http", []string{"SAGAFLOW_TEMPORAL_UI_URL=ftp://ui:8233"}, []string{"SAGAFLOW_TEMPORAL_UI_URL"}},
		{"ui_url_with_query", []string{"SAGAFLOW_TEMPORAL_UI_URL=http://ui:8233/?x=1"}, []string{"SAGAFLOW_TEMPORAL_UI_URL"}},
		{"ui_url_with_password", []string{"SAGAFLOW_TEMPORAL_UI_URL=http://u:secret@ui:8233"}, []string{"SAGAFLOW_TEMPORAL_UI_URL"}},
		{"stuck_after_zero", []string{"SAGAFLOW_OPS_STUCK_AFTER=0s"}, []string{"SAGAFLOW_OPS_STUCK_AFTER"}},
		{"negative_push_linger", []string{"SAGAFLOW_SYNC_PUSH_LINGER=-1s"}, []string{"SAGAFLOW_SYNC_PUSH_LINGER"}},
		{"push_linger_past_its_bound", []string{"SAGAFLOW_SYNC_PUSH_LINGER=31s"}, []string{"SAGAFLOW_SYNC_PUSH_LINGER"}},
		{"push_linger_with_a_nul", []string{"SAGAFLOW_SYNC_PUSH_LINGER=1s\x00"}, []string{"SAGAFLOW_SYNC_PUSH_LINGER"}},
		{"prefetch_past_amqps_16_bits", []string{"SAGAFLOW_INGEST_PREFETCH=65536"}, []string{"SAGAFLOW_INGEST_PREFETCH"}},
		{"prefetch_huge", []string{"SAGAFLOW_INGEST_PREFETCH=99999999999999999999"}, []string{"SAGAFLOW_INGEST_PREFETCH"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.environ, nil)
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error leaks a password: %q", err)
			}
		})
	}
}

func TestVars_documents_every_field(t *testing.T) {
	seen := map[string]bool{}
	for _, v := range Vars() {
		if v.Env == "" || v.Help == "" || v.Flag == "" {
			t.Errorf("undocumented variable: %+v", v)
		}
		if seen[v.Flag] {
			t.Errorf("two variables share flag --%s", v.Flag)
		}
		seen[v.Flag] = true
	}
	if FlagName("SAGAFLOW_HTTP_ADDR") != "http-addr" || FlagName("DATABASE_URL") != "database-url" {
		t.Fatal("flag names are not derived as documented")
	}
}

func TestLoad_push_linger_defaults_to_a_second_and_zero_turns_it_off(t *testing.T) {
	c, err := Load(nil, nil)
	if err != nil || c.SyncPushLinger != time.Second {
		t.Fatalf("default SAGAFLOW_SYNC_PUSH_LINGER = %s, %v; want 1s", c.SyncPushLinger, err)
	}
	c, err = Load([]string{"SAGAFLOW_SYNC_PUSH_LINGER=0"}, nil)
	if err != nil || c.SyncPushLinger != 0 {
		t.Fatalf("SAGAFLOW_SYNC_PUSH_LINGER=0: %s, %v", c.SyncPushLinger, err)
	}
}
