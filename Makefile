# sagaflow — the two commands that matter: `make run` and `make test`.
# Everything they need (PostgreSQL, Redis, RabbitMQ) is installed and started
# by deploy/stack.sh as private instances under .data/.

SHELL := /bin/bash
GO    ?= go
BIN   := bin/sagaflow
# The connection URLs of the local stack, unless the environment names others.
STACK_ENV = eval "$$(deploy/stack.sh env)"
# CLUSTER=1: the join and sync benchmarks measure, in the same run, the
# embedded stack and then the cluster of `make cluster` with 1 and 2 workers.
BENCH_ENV = $(if $(filter 1,$(CLUSTER)),eval "$$(deploy/cluster.sh env)"; export BENCH_CLUSTER=1,$(STACK_ENV))

.PHONY: help cluster cluster-down cluster-status test-cluster lint-static chaos run up down status build test test-unit fuzz test-integration lint lint-fast fmt vet loadtest loadtest-join loadtest-coupon bench-coupon bench-coupon-ceiling bench bench-join bench-coupon-drain bench-sync bench-tracing migrate record-histories clean traces

.DEFAULT_GOAL := help
help: ## this list
	@awk -F':.*## ' '/^[a-zA-Z_-]+:.*## / {printf "  %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: up build ## the whole system in one process, with tenants demo and acme
	@$(STACK_ENV); exec $(BIN) dev

# A trace viewer with nothing but Go: Jaeger v1.75.0, built from its own
# module (tools/jaeger: its dependencies would fight the Temporal server's),
# spans in memory, OTLP on 4317 (gRPC) and 4318 (HTTP), query API on 16686.
# Its web UI is a placeholder (the UI assets are not in the Go module); read
# traces with `cd tools/jaeger && go run ./tracetree TRACE_ID`. docs/tracing.md.
JAEGER := bin/jaeger
traces: ## run Jaeger (OTLP 4317/4318, query 16686); export with the endpoint it prints
	@cd tools/jaeger && $(GO) build -o ../../$(JAEGER) github.com/jaegertracing/jaeger/cmd/jaeger
	@echo "export to it: OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$${JAEGER_OTLP_HTTP_PORT:-4318} make run"
	@echo "   (gRPC: OTEL_EXPORTER_OTLP_PROTOCOL=grpc OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$${JAEGER_OTLP_GRPC_PORT:-4317})"
	@echo "read a trace: cd tools/jaeger && go run ./tracetree TRACE_ID    (API: http://127.0.0.1:$${JAEGER_UI_PORT:-16686}/api/traces/TRACE_ID)"
	@exec $(JAEGER) --config=file:tools/jaeger/config.yaml

up: ## start (installing if needed) PostgreSQL, Redis and RabbitMQ under .data/
	@deploy/stack.sh up

down: ## stop what `make up` started
	@deploy/stack.sh down

# The production topology on this machine (deploy/cluster.sh): a Temporal
# server of its own on PostgreSQL, two api and two worker processes, the Web
# UI and the simulators, each supervised; logs under .data/cluster/.
cluster: ## what production looks like: Temporal on PostgreSQL, 2 api + 2 worker processes
	@deploy/cluster.sh up

cluster-down: ## stop what `make cluster` started
	@deploy/cluster.sh down

cluster-status: ## each process of the cluster: pid, restarts, health
	@deploy/cluster.sh status

# The fault runs on the cluster (internal/clustertest, build tag cluster,
# docs/cluster.md): bring the cluster up, kill and restart its processes
# mid-burst, check the sagas' invariants, take it down again (also when a
# test fails), then print the rows like `make chaos`. CLUSTER_RUN narrows
# the tests (a -run pattern); the cluster runs three RabbitMQ nodes of its
# own unless CLUSTER_RABBITMQ_NODES=0 (then the RabbitMQ node test skips).
CLUSTER_REPORT := .data/cluster-chaos.tsv
CLUSTER_RUN ?= .
CLUSTER_RABBITMQ_NODES ?= 3
test-cluster: ## the fault runs on `make cluster` (kill -9, Temporal, PostgreSQL and RabbitMQ node faults), then their table
	@mkdir -p .data; rm -f $(CLUSTER_REPORT)
	@rc=0; CLUSTER_RABBITMQ_NODES=$(CLUSTER_RABBITMQ_NODES) deploy/cluster.sh up || rc=$$?; \
	  if [ $$rc -eq 0 ]; then eval "$$(deploy/cluster.sh env)"; \
	    SAGAFLOW_CHAOS_REPORT=$(CURDIR)/$(CLUSTER_REPORT) $(GO) test -tags cluster -count=1 -timeout 30m -v -run '$(CLUSTER_RUN)' ./internal/clustertest/ || rc=$$?; fi; \
	  deploy/cluster.sh down || true; \
	  echo; echo "| case | outcome | invariant | held |"; echo "|---|---|---|---|"; \
	  [ -f $(CLUSTER_REPORT) ] && awk -F'\t' '{printf "| %s | %s | %s | %s |\n", $$1, $$2, $$3, $$4}' $(CLUSTER_REPORT); \
	  exit $$rc

status: ## what deploy/stack.sh runs
	@deploy/stack.sh status

build: ## bin/sagaflow
	$(GO) build -o $(BIN) ./cmd/sagaflow

migrate: up build ## apply migrations to the configured database and Temporal
	@$(STACK_ENV); $(BIN) migrate

# Every test: vet and gofmt, the unit and adapter tests with -race, then the
# integration tests against the real servers and an embedded Temporal server.
# The packages that link the Temporal server (SERVER_PKGS) build without
# -race: instrumenting the whole server more than doubles a cold build for no
# gain (our concurrent code is raced in its own packages).
SERVER_PKGS := /internal/integration$$|/internal/app$$|/internal/devserver$$|/cmd/sagaflow$$
RACE_PKGS    = $$($(GO) list ./... | grep -Ev '$(SERVER_PKGS)')
INTEGRATION := ./internal/integration
test: up lint-fast lint-static ## every test: lint, unit tests with -race, fuzzing, integration
	@$(STACK_ENV); \
	  $(GO) test -race -count=1 -timeout 10m $(RACE_PKGS) && \
	  $(MAKE) --no-print-directory fuzz && \
	  $(GO) test -count=1 -timeout 15m $$($(GO) list ./... | grep -E '$(SERVER_PKGS)')

# The Prometheus config, alert rules and their unit tests under
# deploy/observability/, checked by promtool (taken from Debian's prometheus
# package by deploy/stack.sh, binary only). `make test` runs it.
.PHONY: check-observability
test: check-observability
check-observability: ## promtool: scrape config, alert rules and their tests
	@PROMTOOL=$$(deploy/stack.sh tool promtool) && \
	  $$PROMTOOL check config deploy/observability/prometheus.yml && \
	  $$PROMTOOL check rules deploy/observability/alerts.yml && \
	  $$PROMTOOL test rules deploy/observability/alerts_test.yml

# Every fuzz target of the HTTP body decoders (./api), of the trace-context
# decoder (./internal/tracectx, against the W3C propagator) and of the ingest's
# envelope rule they must agree with, each for FUZZTIME with one worker,
# FUZZ_JOBS at a time: one build per package, then each target's FUZZTIME.
# FUZZTIME is a count of executions, not a duration: Go 1.26's coordinator
# can fail a target with a bare "context deadline exceeded" when a
# wall-clock -fuzztime ends on a loaded machine (golang/go#75804, fixed in
# 1.27), and a count has no deadline to race. (The seeds also run as plain tests in
# test-unit.) Seeds are committed under each package's testdata/fuzz/; a
# failing input lands there too, and its log is printed.
FUZZTIME ?= 4000x
FUZZ_JOBS ?= 2
FUZZ_PKGS := ./api ./internal/catalog ./internal/ingest ./internal/valid ./internal/tracectx
fuzz: ## every fuzz target for FUZZTIME executions
	@set -e; mkdir -p bin/fuzz; : > bin/fuzz/targets; \
	for pkg in $(FUZZ_PKGS); do \
	  bin=$(CURDIR)/bin/fuzz/$$(basename $$pkg).test; \
	  $(GO) test -c -fuzz=. -o $$bin $$pkg; \
	  cache=$$($(GO) env GOCACHE)/fuzz/$$($(GO) list $$pkg); \
	  for fn in $$($$bin -test.list='^Fuzz'); do echo "$$pkg $$bin $$cache $$fn" >> bin/fuzz/targets; done; \
	done; \
	xargs -P $(FUZZ_JOBS) -L 1 sh -c 'log=$(CURDIR)/bin/fuzz/$$3.log; \
	  if (cd $$0 && $$1 -test.run="^$$" -test.fuzz="^$$3\$$" -test.fuzztime=$(FUZZTIME) -test.parallel=1 \
	    -test.fuzzcachedir=$$2) > $$log 2>&1; then echo "fuzz $$3: ok"; else echo "fuzz $$3: FAILED"; cat $$log; exit 1; fi' \
	  < bin/fuzz/targets

test-unit: ## the unit and adapter tests with -race
	$(GO) test -race -count=1 $(RACE_PKGS)

test-integration: up ## the integration tests against the real stack
	@$(STACK_ENV); $(GO) test -race -count=1 -timeout 15m -v ./internal/integration/

# Every fault and bad-input case of the hardening work against the real
# stack (it stops and starts the private PostgreSQL, restarts RabbitMQ, kills
# redis-server and worker processes), then one table: case | outcome |
# invariant | held. Each test that is a case writes its row through
# testenv.Chaos; SAGAFLOW_OUTAGE sets the length of the outages (60s).
CHAOS_REPORT := .data/chaos.tsv
CHAOS_RUN ?= ^(TestAPI_edge_a_product_put_with_an_odd_request_id_reaches_the_market|TestAPI_edge_refuses_bad_text_with_a_400_naming_the_field|TestCoupon_a_request_that_can_never_be_written_is_set_aside|TestConsumer_a_poison_message_holds_up_nobody_against_real_postgres|TestConsumer_the_same_message_id_from_two_tenants_is_two_messages|TestSync_20k_parked_items_in_one_shard_keep_the_workflow_running|TestCoupon_idle_campaigns_of_one_tenant_hold_no_slot|TestJoin_a_charge_committing_after_the_saga_gave_up_is_voided|TestJoin_500_joins_keep_money_and_seats_consistent|TestJoin_500_joins_survive_a_worker_restart|TestBreaker_dead_base_url_of_one_tenant_does_not_stop_another|TestBreaker_one_accounts_5xx_at_a_shared_endpoint_stay_its_own|TestRedis_two_clients_share_the_channel_rate|TestCreateChannel_caps_channels_per_tenant|TestPush_refuses_non_public_addresses|TestPush_does_not_follow_redirects|TestPush_errors_never_echo_the_reply|TestAuth_repeated_failures_from_one_address_get_429_with_retry_after|TestHTTPServer_closes_slow_loris_connections|TestChannel_credentials_are_encrypted_at_rest|TestJoin_through_the_api_charges_once_and_confirms|TestCoupon_burst_survives_redis_killed_and_restarted|TestCoupon_burst_survives_a_worker_process_killed|TestSync_50k_changes_survive_restarts|TestOutage_postgres_down_a_minute_every_saga_converges)$$
chaos: up ## every fault and bad-input case, then their table
	@mkdir -p .data; rm -f $(CHAOS_REPORT)
	@$(STACK_ENV); rc=0; \
	  SAGAFLOW_CHAOS_REPORT=$(CURDIR)/$(CHAOS_REPORT) $(GO) test -p 1 -count=1 -timeout 30m -run '$(CHAOS_RUN)' ./... || rc=$$?; \
	  echo; echo "| case | outcome | invariant | held |"; echo "|---|---|---|---|"; \
	  [ -f $(CHAOS_REPORT) ] && awk -F'\t' '{printf "| %s | %s | %s | %s |\n", $$1, $$2, $$3, $$4}' $(CHAOS_REPORT); \
	  exit $$rc

# Re-record the histories the replay tests use (after an intended change to
# a workflow; commit the new files with it).
record-histories: up ## re-record the replay tests' histories
	@$(STACK_ENV); SAGAFLOW_RECORD_HISTORY=1 $(GO) test -count=1 -run 'TestProbe_runs|TestJoin_through|TestJoin_cancel_before|TestCoupon_burst_issues|TestCoupon_a_request_that_can_never|TestSync_parks|TestSync_a_channel_connected_later|TestSync_20k_parked' ./internal/integration/

fmt: ## gofmt every Go file
	gofmt -w $$(git ls-files '*.go')

vet: ## go vet
	$(GO) vet ./...

lint-fast: vet ## go vet and gofmt
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

# staticcheck (config: staticcheck.conf) and Temporal's workflowcheck, which
# proves the workflows call nothing non-deterministic. make test runs them
# over every package but those that link the Temporal server: those four
# take staticcheck more than three minutes to load, and `make lint` covers
# them.
STATICCHECK   := $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
WORKFLOWCHECK := $(GO) run go.temporal.io/sdk/contrib/tools/workflowcheck@v0.6.0
lint-static: ## staticcheck and workflowcheck (no Temporal-server packages)
	$(STATICCHECK) $(RACE_PKGS)
	$(WORKFLOWCHECK) ./workflows/...

lint: lint-fast ## every linter over every package
	$(STATICCHECK) ./...
	$(WORKFLOWCHECK) ./workflows/...

LOADTEST_SCRIPT ?= loadtest/smoke.js
loadtest: ## k6 against a running `make run` (HTML report in .data/reports/)
	loadtest/k6.sh $(LOADTEST_SCRIPT) $(K6_ARGS)

loadtest-join: ## k6 join-saga load test against a running `make run`
	loadtest/k6.sh loadtest/join.js $(K6_ARGS)

# How fast a campaign's workflow drains accepted requests into PostgreSQL.
BENCH_COUPONS ?= 50000
bench-coupon-drain: up ## how fast a campaign drains accepted requests
	@$(STACK_ENV); BENCH_COUPONS=$(BENCH_COUPONS) $(GO) test -count=1 -run '^$$' -bench 'BenchmarkCoupon_issue_drain' -benchtime 1x $(INTEGRATION)

loadtest-coupon: ## k6 coupon hot-path load test against a running `make run`
	loadtest/k6.sh loadtest/coupon.js $(K6_ARGS)

# Coupon requests/s and p50/p99 of sagaflow (`make run` in another shell) next
# to loadtest/bare, the same coupon.js with the same RATE and DURATION. With
# CLUSTER=1, `make cluster` instead of `make run`: one run of bare, a private
# embedded `sagaflow dev`, the cluster with 2 worker processes (requests over
# both APIs) and with worker2 stopped, in one table (loadtest/bench-coupon.sh).
CLUSTER ?=
bench-coupon: up ## coupon requests/s and p99 next to bare gin (needs make run; CLUSTER=1: embedded vs make cluster with 2 and 1 workers)
	CLUSTER=$(CLUSTER) loadtest/bench-coupon.sh

# The highest coupon request rate each of sagaflow and the bare endpoint holds
# with p99 under 20 ms, searched over COUPON_RATES, and their ratio; with
# CLUSTER=1 the same four modes as bench-coupon's.
COUPON_RATES ?= 500 1000 1500 2000 2500 3000 4000 6000
bench-coupon-ceiling: up ## the highest coupon rate with p99 under 20 ms (CLUSTER=1: embedded and make cluster with 2 and 1 workers too)
	CLUSTER=$(CLUSTER) RATES="$(COUPON_RATES)" DURATION=$${DURATION:-10s} loadtest/bench-coupon.sh

bench: bench-join bench-coupon-drain bench-sync ## every Go benchmark

# Marketplace sync events/s from publish to applied at every market, sustained
# for BENCH_SYNC_SECONDS at BENCH_SYNC_RATE, next to the raw RabbitMQ rate
# (confirms, manual acks, same message size) measured in the same run.
# BENCH_SYNC_MODE: hot (2 x 2,000 SKUs), spread (every event a distinct SKU of
# 2 x 100,000) or both.
BENCH_SYNC_RATE ?= 2500
BENCH_SYNC_SECONDS ?= 60
BENCH_SYNC_MODE ?= hot
BENCH_INGEST_RATE ?= 20000
bench-sync: up ## sync events/s end to end next to raw RabbitMQ (BENCH_SYNC_MODE=hot|spread|both, CLUSTER=1)
	@$(BENCH_ENV); BENCH_SYNC_MODE=$(BENCH_SYNC_MODE) BENCH_SYNC_RATE=$(BENCH_SYNC_RATE) BENCH_SYNC_SECONDS=$(BENCH_SYNC_SECONDS) $(GO) test -count=1 -timeout 60m -run '^$$' -bench 'BenchmarkSync_end_to_end' -benchtime 1x $(INTEGRATION)

# The ingest by itself (RabbitMQ, dedupe in Redis, PostgreSQL; a Sink that
# only counts: no Temporal, no markets) on the sync workload, next to raw
# RabbitMQ in the same run: the ceiling the ingest leaves the sync.
bench-ingest: up ## the ingest alone, events/s next to raw RabbitMQ (BENCH_SYNC_MODE, BENCH_SYNC_RATE as bench-sync)
	@$(STACK_ENV); BENCH_SYNC_MODE=$(BENCH_SYNC_MODE) BENCH_SYNC_RATE=$(BENCH_INGEST_RATE) BENCH_SYNC_SECONDS=$(BENCH_SYNC_SECONDS) $(GO) test -count=1 -timeout 30m -run '^$$' -bench 'BenchmarkIngest_alone' -benchtime 1x $(INTEGRATION)

# What exporting traces costs the hot paths, each in one run: the sync
# workload on one embedded server (exporting to an in-process OTLP sink),
# after a warm-up run, in BENCH_TRACING_ROUNDS off/on pairs in ABBA order,
# once with a traceparent on every message (as the outbox relay publishes)
# and once without (a root trace per message); then the coupon k6 script,
# closed loop (the most the machine answers) and open loop (1,000/s), each
# in BENCH_TRACING_ROUNDS ABBA pairs, against a private `sagaflow dev`
# started without and with OTEL_EXPORTER_OTLP_ENDPOINT at loadtest/otlpsink
# (loadtest/bench-tracing.sh). Each prints the median of the pairs' on/off
# ratios (about 23 minutes with 4 pairs). docs/benchmarks.md, "Tracing overhead".
BENCH_TRACING_SYNC_RATE ?= 10000
BENCH_TRACING_SYNC_SECONDS ?= 10
BENCH_TRACING_ROUNDS ?= 4
bench-tracing: up ## sync and coupon throughput with and without traces exported
	@$(STACK_ENV); for tp in 1 0; do BENCH_SYNC_TRACEPARENT=$$tp BENCH_SYNC_TRACING=both BENCH_SYNC_RATE=$(BENCH_TRACING_SYNC_RATE) BENCH_SYNC_SECONDS=$(BENCH_TRACING_SYNC_SECONDS) BENCH_SYNC_ROUNDS=$(BENCH_TRACING_ROUNDS) $(GO) test -count=1 -timeout 30m -run '^$$' -bench 'BenchmarkSync_end_to_end' -benchtime 1x $(INTEGRATION) || exit 1; done
	ROUNDS=$(BENCH_TRACING_ROUNDS) loadtest/bench-tracing.sh

# Completed joins/s and p99 start-to-terminal on the embedded server, next to
# a bare workflow with the same seven no-op activities, in the same run:
# BENCH_JOIN_ROUNDS rounds of bare then join per target, each phase followed
# by 31 s for the timers it left (about 5 minutes a target with 3 rounds).
BENCH_JOINS ?= 400
BENCH_JOIN_ROUNDS ?= 3
bench-join: up ## joins/s next to a bare workflow (CLUSTER=1: on the cluster too)
	@$(BENCH_ENV); BENCH_JOINS=$(BENCH_JOINS) BENCH_JOIN_ROUNDS=$(BENCH_JOIN_ROUNDS) $(GO) test -count=1 -timeout 60m -run '^$$' -bench 'BenchmarkJoin_vs_bare' -benchtime 1x $(INTEGRATION)

clean: ## remove bin/
	rm -rf bin
