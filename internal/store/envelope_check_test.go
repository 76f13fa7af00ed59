package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sagaflow/sagaflow/internal/catalog"
)

// A change whose envelope the ingest would dead-letter must fail the PUT
// before the product commits: nothing stored, nothing in the outbox.
func TestPutProduct_refuses_an_envelope_the_ingest_would_refuse_before_commit(t *testing.T) {
	t.Parallel()
	c, s, tn := newCatalog(t)
	ctx := context.Background()
	_, _, err := c.PutProduct(ctx, tn.Name, product("TRACE-1", 1), "my trace")
	if !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("put with trace id %q = %v, want ErrInvalid", "my trace", err)
	}
	if _, err := c.Product(ctx, "TRACE-1"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("product committed although its envelope was refused: %v", err)
	}
	if rows := outboxRows(t, s, tn); len(rows) != 0 {
		t.Fatalf("%d outbox rows, want none", len(rows))
	}
	if _, _, err := c.PutProduct(ctx, tn.Name, product("TRACE-1", 1), "4bf92f3577b34da6a3ce929d0e0e4736"); err != nil {
		t.Fatalf("put with a W3C trace id: %v", err)
	}
}
