package integration

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/deadletter"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

type deadLetterDoc struct {
	ID         string `json:"id"`
	MessageID  string `json:"message_id"`
	Reason     string `json:"reason"`
	Detail     string `json:"detail"`
	Transient  bool   `json:"transient"`
	TraceID    string `json:"trace_id"`
	WorkflowID string `json:"workflow_id"`
	UIURL      string `json:"ui_url"`
}

// deadLetter waits until the caller's dead letters hold messageID.
func deadLetter(t *testing.T, key, query, messageID string) deadLetterDoc {
	t.Helper()
	var found deadLetterDoc
	testenv.Eventually(t, time.Minute, "dead letter "+messageID+" in /v1/deadletters", func() bool {
		var page struct{ Items []deadLetterDoc }
		if code := call(t, key, http.MethodGet, "/v1/deadletters?"+query, nil, &page); code != http.StatusOK {
			t.Fatalf("GET /v1/deadletters?%s: %d", query, code)
		}
		for _, l := range page.Items {
			if l.MessageID == messageID {
				found = l
				return true
			}
		}
		return false
	})
	return found
}

// A poison message shows in /v1/deadletters with its reason; a change the
// broker dead-lettered after the delivery limit (a transient failure) is
// replayed through the API, once, and reaches the market; another tenant
// sees and replays none of it.
func TestDeadLetters_poison_shows_with_its_reason_and_a_transient_one_replays_to_the_market(t *testing.T) {
	st := newSyncTenant(t, syncTenantName("dl"), "shopwave")
	tn := st.t.Name
	ctx, cancel := context.WithCancel(context.Background())
	archived := make(chan error, 1)
	go func() { archived <- stack.app.DeadLetterArchiver().Run(ctx) }()
	defer func() {
		cancel()
		if err := <-archived; err != nil {
			t.Error(err)
		}
	}()

	ch, closeConn := testenv.AMQPChannel(t, stack.app.Config.AMQPURL)
	defer closeConn()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	publish := func(exchange string, p amqp.Publishing) {
		t.Helper()
		dc, err := ch.PublishWithDeferredConfirm(exchange, catalog.RoutingKey(tn), false, false, p)
		if err != nil || !dc.Wait() {
			t.Fatalf("publish to %s: %v", exchange, err)
		}
	}
	poisonID := "poison-" + tn
	publish(catalog.Exchange, amqp.Publishing{MessageId: poisonID, ContentType: "application/json",
		Body: []byte(`{"message_id":"` + poisonID + `","tenant_id":"` + tn + `"`)})
	// What the broker does after rabbit.DeliveryLimit failed deliveries
	// (the consumers crashed, Temporal was down): the change itself is good.
	change := changeEvent(t, tn, catalog.Product{SKU: "DL-1", Name: "Dead letter mug", Price: catalog.Money{Amount: 9900, Currency: "KRW"}, Stock: 3, Version: 1})
	publish(catalog.DeadExchange, amqp.Publishing{MessageId: change.id, ContentType: "application/json", Body: change.body,
		Headers: amqp.Table{"x-death": []any{amqp.Table{"reason": "delivery_limit", "queue": catalog.IngestQueue, "count": int64(20)}}}})

	poison := deadLetter(t, st.key, "reason="+deadletter.ReasonInvalid, poisonID)
	if poison.Transient || !strings.Contains(poison.Detail, "not JSON") {
		t.Fatalf("poison letter %+v, want reason invalid naming the JSON", poison)
	}
	transient := deadLetter(t, st.key, "reason="+deadletter.ReasonDeliveryLimit, change.id)
	if !transient.Transient || transient.TraceID != "it-"+change.id || !strings.HasPrefix(transient.WorkflowID, tn+":sync:") || transient.UIURL == "" {
		t.Fatalf("transient letter %+v", transient)
	}

	// Tenant acme sees neither and replays neither.
	var theirs struct{ Items []deadLetterDoc }
	if code := call(t, acmeKey(), http.MethodGet, "/v1/deadletters", nil, &theirs); code != http.StatusOK {
		t.Fatalf("acme GET: %d", code)
	}
	for _, l := range theirs.Items {
		if l.ID == poison.ID || l.ID == transient.ID {
			t.Fatalf("acme sees %s's dead letter %+v", tn, l)
		}
	}
	var replay struct {
		Replayed    int      `json:"replayed"`
		IDs         []string `json:"ids"`
		NotReplayed []string `json:"not_replayed"`
	}
	ids := map[string]any{"ids": []string{transient.ID}}
	if code := call(t, acmeKey(), http.MethodPost, "/v1/deadletters/replay", ids, &replay); code != http.StatusOK || replay.Replayed != 0 {
		t.Fatalf("acme replayed %s's letter: %d %+v", tn, code, replay)
	}

	if code := call(t, st.key, http.MethodPost, "/v1/deadletters/replay", ids, &replay); code != http.StatusOK || replay.Replayed != 1 || !slices.Contains(replay.IDs, transient.ID) {
		t.Fatalf("replay: %d %+v", code, replay)
	}
	if code := call(t, st.key, http.MethodPost, "/v1/deadletters/replay", ids, &replay); code != http.StatusOK || replay.Replayed != 0 {
		t.Fatalf("second replay: %d %+v, want nothing published again", code, replay)
	}
	testenv.Eventually(t, 2*time.Minute, "the replayed change at shopwave", func() bool {
		l, ok := stack.sims.Markets["shopwave"].Listings(credentials(tn, "shopwave"))["DL-1"]
		return ok && l.Version == 1 && l.Name == "Dead letter mug"
	})
}
