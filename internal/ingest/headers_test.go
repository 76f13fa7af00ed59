package ingest_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/ingest"
)

// A message's headers flow into its dead letter. Headers that filled the
// frame the message came in would not fit with ours: publishing them made
// the broker close the whole connection, every consumer of the process
// lost its channel, and the batch came again, until the broker's delivery
// limit dead-lettered the message without a reason.
func TestConsumer_dead_letters_messages_with_huge_or_odd_headers(t *testing.T) {
	t.Parallel()
	f := setup(t)
	tn := f.tenant(t)
	key := catalog.RoutingKey(tn.Name)
	// Close to RabbitMQ's default frame_max of 128 KiB, with the rest of
	// the content header.
	huge := msg{key: key, body: []byte("not json"), id: "huge-" + uuid.NewString(),
		headers: amqp.Table{"x-big": strings.Repeat("x", 130_900)}}
	binary := []byte{0, 1, 2, 0xff, 0xfe, '\n', 0}
	odd := msg{key: key, body: []byte("not json either"), id: "odd-" + uuid.NewString(), headers: amqp.Table{
		catalog.ReasonHeader:            strings.Repeat("forged ", 1500), // ~10 KB: ours replaces it
		ingest.OriginalRoutingKeyHeader: "forged",
		"x-bin":                         binary,
		"x-nested":                      amqp.Table{"a": []any{int32(1), "s", amqp.Table{"deep": true}}},
		"x-\x00\xffkey":                 "v",
	}}
	good := change(tn.Name, "SKU-1", 1, uuid.NewString())

	c := f.consumer(ingest.Options{Consumers: 1})
	run(t, c)
	f.publish(t, huge, odd, good)
	eventually(t, 20*time.Second, "the good change delivered", func() bool { return f.sink.acceptedIDs()[good.id] == 1 })
	eventually(t, 20*time.Second, "both dead-lettered by the consumer", func() bool { return c.Stats().DeadLettered == 2 })

	for _, d := range f.get(t, catalog.DeadQueue, 2) {
		reason, _ := d.Headers[catalog.ReasonHeader].(string)
		if !strings.Contains(reason, "not JSON") || len(reason) > 1024 {
			t.Errorf("%s: reason %q", d.MessageId, reason)
		}
		if d.Headers[ingest.OriginalRoutingKeyHeader] != key {
			t.Errorf("%s: original routing key %v", d.MessageId, d.Headers[ingest.OriginalRoutingKeyHeader])
		}
		switch {
		case strings.HasPrefix(d.MessageId, "huge-"):
			if _, ok := d.Headers["x-big"]; ok {
				t.Errorf("the huge header was copied")
			}
			if why, _ := d.Headers[ingest.DroppedHeadersHeader].(string); !strings.Contains(why, "bytes") {
				t.Errorf("%s = %q", ingest.DroppedHeadersHeader, why)
			}
		case strings.HasPrefix(d.MessageId, "odd-"):
			if b, _ := d.Headers["x-bin"].([]byte); !bytes.Equal(b, binary) {
				t.Errorf("x-bin = %v", d.Headers["x-bin"])
			}
			if _, ok := d.Headers["x-nested"].(amqp.Table); !ok || d.Headers["x-\x00\xffkey"] != "v" {
				t.Errorf("headers not copied: %v", d.Headers)
			}
			if _, ok := d.Headers[ingest.DroppedHeadersHeader]; ok {
				t.Errorf("headers dropped: %v", d.Headers[ingest.DroppedHeadersHeader])
			}
		default:
			t.Errorf("unexpected dead letter %q", d.MessageId)
		}
	}
	if s := c.Stats(); s.Failures != 0 {
		t.Errorf("stats = %+v", s)
	}
}
