// Package testenv gives tests their own corner of the real servers that
// deploy/stack.sh runs (or that DATABASE_URL, REDIS_URL, AMQP_URL and
// RABBITMQ_MANAGEMENT_URL name): a fresh PostgreSQL database, a Redis key
// prefix and a RabbitMQ virtual host per test run, removed afterwards, so
// that runs never see each other's data. A server that is not reachable fails
// the test: `make test` starts them first.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sagaflow/sagaflow/internal/config"
)

// Defaults of the local stack (deploy/stack.sh env).
const (
	defaultManagementURL = "http://guest:guest@127.0.0.1:56730"
)

// Env is one test run's share of the servers. Close removes it.
type Env struct {
	Config  config.Config
	cleanup []func()
	// mgmt and vhostName locate the run's virtual host in the management API.
	mgmt, vhostName string
}

// RunID is a short random name for this run's resources.
func RunID() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// New creates a database, a Redis prefix and a RabbitMQ virtual host named
// after a fresh run id, and returns a configuration that points at them
// (the rest from the environment, as the processes read it).
func New(ctx context.Context) (*Env, error) {
	cfg, err := config.FromEnv()
	if err != nil {
		return nil, err
	}
	id := RunID()
	e := &Env{Config: cfg}
	if e.Config.DatabaseURL, err = e.database(ctx, cfg.DatabaseURL, "sagaflow_test_"+id); err != nil {
		e.Close()
		return nil, err
	}
	e.Config.RedisPrefix = "sagaflow-test-" + id + ":"
	if e.Config.AMQPURL, err = e.vhost(ctx, cfg.AMQPURL, "sagaflow-test-"+id); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Close drops what New created.
func (e *Env) Close() {
	for i := len(e.cleanup) - 1; i >= 0; i-- {
		e.cleanup[i]()
	}
	e.cleanup = nil
}

func (e *Env) database(ctx context.Context, baseURL, name string) (string, error) {
	admin, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		return "", fmt.Errorf("testenv: postgres at %s not reachable (run `make up`): %w", redact(baseURL), err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("testenv: create database: %w", err)
	}
	e.cleanup = append(e.cleanup, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, baseURL); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			_ = c.Close(ctx)
		}
	})
	u, err := url.Parse(baseURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// vhost creates a virtual host through the management API and grants the
// AMQP user every permission on it.
func (e *Env) vhost(ctx context.Context, amqpURL, name string) (string, error) {
	mgmt := os.Getenv("RABBITMQ_MANAGEMENT_URL")
	if mgmt == "" {
		mgmt = defaultManagementURL
	}
	e.mgmt, e.vhostName = mgmt, name
	au, err := url.Parse(amqpURL)
	if err != nil {
		return "", err
	}
	user := au.User.Username()
	if user == "" {
		user = "guest"
	}
	if err := management(ctx, mgmt, http.MethodPut, "/api/vhosts/"+url.PathEscape(name), `{}`, nil); err != nil {
		return "", err
	}
	e.cleanup = append(e.cleanup, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = management(ctx, mgmt, http.MethodDelete, "/api/vhosts/"+url.PathEscape(name), "", nil)
	})
	perm := `{"configure":".*","write":".*","read":".*"}`
	if err := management(ctx, mgmt, http.MethodPut, "/api/permissions/"+url.PathEscape(name)+"/"+url.PathEscape(user), perm, nil); err != nil {
		return "", err
	}
	au.Path = "/" + name
	return au.String(), nil
}

// Connections waits (up to 15 s: the management API learns of new
// connections with a delay) until the run's virtual host has client
// connections, and returns their names.
func (e *Env) Connections(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		var conns []struct {
			Name string `json:"name"`
		}
		if err := management(ctx, e.mgmt, http.MethodGet, "/api/vhosts/"+url.PathEscape(e.vhostName)+"/connections", "", &conns); err != nil {
			return nil, err
		}
		if len(conns) > 0 {
			names := make([]string, len(conns))
			for i, c := range conns {
				names[i] = c.Name
			}
			return names, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("testenv: no connections to vhost %s listed: %w", e.vhostName, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// CloseConnections makes the broker close the named connections, as a
// broker restart would; one already gone is no error.
func (e *Env) CloseConnections(ctx context.Context, names []string) error {
	for _, n := range names {
		err := management(ctx, e.mgmt, http.MethodDelete, "/api/connections/"+url.PathEscape(n), "", nil)
		if err != nil && !errors.Is(err, errNotFound) {
			return err
		}
	}
	return nil
}

var errNotFound = errors.New("404 not found")

// management calls the management API and decodes a JSON answer into out
// (when not nil).
func management(ctx context.Context, base, method, path, body string, out any) error {
	// The client sends the URL's user info as basic auth.
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("testenv: rabbitmq management at %s not reachable (run `make up`): %w", redact(base), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("testenv: rabbitmq management %s %s: %w", method, path, errNotFound)
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("testenv: rabbitmq management %s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("testenv: rabbitmq management %s %s: %w", method, path, err)
		}
	}
	return nil
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}
