package testenv

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// AMQPChannel dials amqpURL with the plain client, as a publisher or a
// consumer outside sagaflow's code would, and opens a channel on the
// connection. closeConn closes the connection (and the channel with it):
// defer it where the channel's use ends, as a consumer left open would go on
// taking messages.
func AMQPChannel(t testing.TB, amqpURL string) (ch *amqp.Channel, closeConn func()) {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	ch, err = conn.Channel()
	if err != nil {
		_ = conn.Close()
		t.Fatal(err)
	}
	return ch, func() { _ = conn.Close() }
}
