package deadletter

import (
	"context"
	"fmt"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/rabbit"
)

// ReplayStore takes letters for a replay in a transaction that marks them
// replayed only if publish succeeds (internal/store.Store).
type ReplayStore interface {
	ReplayDeadLetters(ctx context.Context, schema string, sel Selection, limit int, publish func(context.Context, []Letter) error) ([]Letter, bool, error)
}

// Replayer publishes dead letters to the catalog exchange again, with
// publisher confirms, each at most once per death. Safe for concurrent use.
type Replayer struct {
	conn     *rabbit.Conn
	store    ReplayStore
	exchange string
}

// NewReplayer returns a Replayer publishing to catalog.Exchange on conn.
func NewReplayer(conn *rabbit.Conn, store ReplayStore) *Replayer {
	return &Replayer{conn: conn, store: store, exchange: catalog.Exchange}
}

// Replayed is what one replay did.
type Replayed struct {
	IDs []string
	// More: letters that sel selects remain (past limit).
	More bool
}

// Replay publishes up to limit letters of schema that sel selects and
// marks them replayed; nothing is marked unless the broker confirmed every
// publish. A letter replayed already is not published again (until it dies
// again).
func (r *Replayer) Replay(ctx context.Context, schema string, sel Selection, limit int) (Replayed, error) {
	ls, more, err := r.store.ReplayDeadLetters(ctx, schema, sel, limit, r.publish)
	if err != nil {
		return Replayed{}, err
	}
	out := Replayed{IDs: make([]string, len(ls)), More: more}
	for i, l := range ls {
		out.IDs[i] = l.ID
	}
	return out, nil
}

// publish sends the letters and waits for the broker's confirms.
func (r *Replayer) publish(ctx context.Context, ls []Letter) error {
	ch, err := r.conn.Channel(ctx)
	if err != nil {
		return fmt.Errorf("deadletter: replay: %w", err)
	}
	defer func() { _ = ch.Close() }()
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("deadletter: replay: confirm mode: %w", err)
	}
	confirms := make([]*amqp.DeferredConfirmation, len(ls))
	for i, l := range ls {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, r.exchange, l.RoutingKey, false, false, amqp.Publishing{
			Headers:      replayHeaders(l),
			ContentType:  l.ContentType,
			MessageId:    l.MessageID,
			DeliveryMode: amqp.Persistent,
			Body:         l.Body,
		})
		if err != nil {
			return fmt.Errorf("deadletter: replay %s: %w", l.ID, err)
		}
		confirms[i] = dc
	}
	for i, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("deadletter: replay %s: confirm: %w", ls[i].ID, err)
		}
		if !ok {
			return fmt.Errorf("deadletter: replay %s: the broker refused it (nack)", ls[i].ID)
		}
	}
	return nil
}

// replayHeaders are the letter's text headers without those of its death,
// plus ReplayedFromHeader.
func replayHeaders(l Letter) amqp.Table {
	h := amqp.Table{ReplayedFromHeader: l.ID}
	for k, v := range l.Headers {
		s, ok := v.(string)
		if !ok || k == catalog.ReasonHeader || k == originalRoutingKeyHeader || k == TruncatedHeader ||
			strings.HasPrefix(k, "x-death") || strings.HasPrefix(k, "x-first-death") || strings.HasPrefix(k, "x-last-death") ||
			k == "x-delivery-count" || k == "x-sagaflow-dropped-headers" {
			continue
		}
		h[k] = s
	}
	return h
}
