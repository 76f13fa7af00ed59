// Package rabbit is sagaflow's RabbitMQ adapter (AMQP 0-9-1): one connection
// per process, redialled when the broker drops it, from which callers open
// their own channels.
package rabbit

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Conn is a lazily (re)dialled AMQP connection. Safe for concurrent use.
type Conn struct {
	url  string
	mu   sync.Mutex
	conn *amqp.Connection
}

// Dial connects to url and returns a Conn that redials after the broker
// closes the connection (a restart, a network blip).
func Dial(ctx context.Context, url string) (*Conn, error) {
	c := &Conn{url: url}
	if _, err := c.connection(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// connection returns the open connection, dialling a new one if needed.
func (c *Conn) connection(ctx context.Context) (*amqp.Connection, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil && !c.conn.IsClosed() {
		return c.conn, nil
	}
	type result struct {
		conn *amqp.Connection
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := amqp.DialConfig(c.url, amqp.Config{Properties: amqp.Table{"connection_name": "sagaflow"}})
		done <- result{conn, err}
	}()
	select {
	case <-ctx.Done():
		// The dial goes on; close what it brings so nothing leaks.
		go func() {
			if r := <-done; r.conn != nil {
				_ = r.conn.Close()
			}
		}()
		return nil, fmt.Errorf("rabbit: dial %s: %w", redact(c.url), ctx.Err())
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("rabbit: dial %s: %w", redact(c.url), r.err)
		}
		c.conn = r.conn
		return r.conn, nil
	}
}

// Channel opens a new channel; the caller closes it.
func (c *Conn) Channel(ctx context.Context) (*amqp.Channel, error) {
	conn, err := c.connection(ctx)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("rabbit: open channel: %w", err)
	}
	return ch, nil
}

// Ping reports whether the broker is reachable: it opens and closes a channel.
func (c *Conn) Ping(ctx context.Context) error {
	ch, err := c.Channel(ctx)
	if err != nil {
		return err
	}
	return ch.Close()
}

// Inspect reports the queue's ready messages and its consumers, by a
// passive declare on a channel of its own (a queue that does not exist
// closes that channel, not another). Messages delivered but not acked are
// not counted.
func (c *Conn) Inspect(ctx context.Context, queue string) (messages, consumers int, err error) {
	ch, err := c.Channel(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = ch.Close() }()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("rabbit: inspect %s: %w", queue, err)
	}
	return q.Messages, q.Consumers, nil
}

// Close closes the connection; channels opened from it close with it.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil || c.conn.IsClosed() {
		return nil
	}
	err := c.conn.Close()
	if errors.Is(err, amqp.ErrClosed) {
		return nil
	}
	return err
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}
