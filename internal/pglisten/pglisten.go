// Package pglisten turns PostgreSQL NOTIFYs into calls, for the background
// loops (the outbox relay, the workflow starter) that poll a table and want
// to be woken early when a row is written.
package pglisten

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Listen holds one connection of pool in LISTEN channel and calls notified
// with the payload of each notification, until ctx ends. notified runs on
// Listen's goroutine and must not block. When the connection fails, Listen
// logs a warning starting with what and listens again after retry; the
// caller's poll covers the gap, as a NOTIFY sent meanwhile is lost.
//
// listening, when not nil, is told true each time the LISTEN is in place
// (what was committed before it was not notified: the caller reads it
// then) and false each time it is lost; it too must not block.
func Listen(ctx context.Context, pool *pgxpool.Pool, channel string, retry time.Duration, log *slog.Logger, what string,
	listening func(up bool), notified func(payload string)) {
	if listening == nil {
		listening = func(bool) {}
	}
	for ctx.Err() == nil {
		err := func() error {
			conn, err := pool.Acquire(ctx)
			if err != nil {
				return err
			}
			defer conn.Release()
			if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
				return err
			}
			defer func() { _, _ = conn.Exec(context.Background(), "UNLISTEN "+channel) }()
			listening(true)
			defer listening(false)
			for {
				n, err := conn.Conn().WaitForNotification(ctx)
				if err != nil {
					return err
				}
				notified(n.Payload)
			}
		}()
		if ctx.Err() != nil {
			return
		}
		log.Warn(what+": listen failed; polling until it is back", "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}
}
