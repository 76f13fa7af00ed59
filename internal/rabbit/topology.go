package rabbit

import (
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/internal/catalog"
)

// DeliveryLimit is how often the ingest queue hands out one message before
// the broker dead-letters it instead: a message that keeps failing (and so
// keeps being requeued, or keeps killing its consumer) ends in the dead queue
// rather than circling forever. Redeliveries after a dropped connection count
// too, so it is generous.
const DeliveryLimit = 20

// DeclareTopology declares the catalog's bus on ch, and nothing else:
//
//	catalog.Exchange      topic, durable; alternate exchange catalog.DeadExchange
//	  └─ "product.changed.*" ─▶ catalog.IngestQueue
//	                             quorum, durable; x-delivery-limit DeliveryLimit,
//	                             dead-letters to catalog.DeadExchange
//	catalog.DeadExchange  fanout, durable
//	  └─▶ catalog.DeadQueue  quorum, durable
//
// The dead queue thus receives three kinds of message: those the ingest
// rejected itself (with catalog.ReasonHeader saying why), those the broker
// dead-lettered after DeliveryLimit deliveries (with the broker's x-death
// header), and those published to the exchange with a routing key that no
// queue binds (unroutable, no header), so that nothing published is lost in
// silence.
//
// It is idempotent: declaring again with the same arguments changes nothing,
// so every process declares it on start and after reconnecting. Declaring it
// with other arguments than a broker already holds fails with
// PRECONDITION_FAILED and closes ch; change arguments only with a migration
// (a policy, or new names).
func DeclareTopology(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(catalog.DeadExchange, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("rabbit: declare exchange %s: %w", catalog.DeadExchange, err)
	}
	if _, err := ch.QueueDeclare(catalog.DeadQueue, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg: amqp.QueueTypeQuorum,
	}); err != nil {
		return fmt.Errorf("rabbit: declare queue %s: %w", catalog.DeadQueue, err)
	}
	if err := ch.QueueBind(catalog.DeadQueue, "", catalog.DeadExchange, false, nil); err != nil {
		return fmt.Errorf("rabbit: bind %s to %s: %w", catalog.DeadQueue, catalog.DeadExchange, err)
	}
	if err := ch.ExchangeDeclare(catalog.Exchange, amqp.ExchangeTopic, true, false, false, false, amqp.Table{
		"alternate-exchange": catalog.DeadExchange,
	}); err != nil {
		return fmt.Errorf("rabbit: declare exchange %s: %w", catalog.Exchange, err)
	}
	if _, err := ch.QueueDeclare(catalog.IngestQueue, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg:        amqp.QueueTypeQuorum,
		"x-dead-letter-exchange": catalog.DeadExchange,
		"x-delivery-limit":       int64(DeliveryLimit),
	}); err != nil {
		return fmt.Errorf("rabbit: declare queue %s: %w", catalog.IngestQueue, err)
	}
	key := catalog.TypeProductChanged + ".*"
	if err := ch.QueueBind(catalog.IngestQueue, key, catalog.Exchange, false, nil); err != nil {
		return fmt.Errorf("rabbit: bind %s to %s with %q: %w", catalog.IngestQueue, catalog.Exchange, key, err)
	}
	return nil
}
