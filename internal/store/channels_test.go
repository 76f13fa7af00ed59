package store_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/secret"
	"github.com/sagaflow/sagaflow/internal/store"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

func keyring(t *testing.T, spec ...string) *secret.Keyring {
	t.Helper()
	parts := make([]string, len(spec))
	for i, id := range spec {
		k := make([]byte, secret.KeySize)
		copy(k, id) // a key per id, the same every time
		parts[i] = id + ":" + base64.StdEncoding.EncodeToString(k)
	}
	k, err := secret.Parse(strings.Join(parts, ","))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// storedCredentials is what the credentials column holds.
func storedCredentials(t *testing.T, s *store.Store, tn tenant.Tenant, id string) string {
	t.Helper()
	var v string
	if err := s.Pool().QueryRow(context.Background(), `SELECT credentials FROM `+pgx.Identifier{tn.Schema, "channels"}.Sanitize()+
		` WHERE id = $1`, id).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func setCredentials(t *testing.T, s *store.Store, tn tenant.Tenant, id, v string) {
	t.Helper()
	if _, err := s.Pool().Exec(context.Background(), `UPDATE `+pgx.Identifier{tn.Schema, "channels"}.Sanitize()+
		` SET credentials = $2 WHERE id = $1`, id, v); err != nil {
		t.Fatal(err)
	}
}

func newTenantIn(t *testing.T, s *store.Store) tenant.Tenant {
	t.Helper()
	tn := newTenant(t)
	if err := s.CreateTenant(context.Background(), tn); err != nil {
		t.Fatal(err)
	}
	return tn
}

// The credentials column holds a sealed value, never the credentials; the
// API's reads open it.
func TestChannel_credentials_are_encrypted_at_rest(t *testing.T) {
	testenv.Chaos(t, "11. channel credentials at rest", "the column holds ciphertext; reads give the credentials")
	t.Parallel()
	ctx := context.Background()
	s := open(t, store.WithSecrets(keyring(t, "k0")))
	tn := newTenantIn(t, s)
	c := s.Catalog(tn.Schema)
	ch, err := c.CreateChannel(ctx, catalog.Channel{Market: "souk", BaseURL: "https://souk.example", Credentials: "tok-very-secret", RateLimitPerSec: 5})
	if err != nil {
		t.Fatal(err)
	}
	raw := storedCredentials(t, s, tn, ch.ID)
	if raw == "tok-very-secret" || strings.Contains(raw, "very-secret") || !strings.HasPrefix(raw, secret.Prefix+"k0:") {
		t.Fatalf("credentials column holds %q", raw)
	}
	got, err := c.Channel(ctx, ch.ID)
	if err != nil || got.Credentials != "tok-very-secret" {
		t.Fatalf("Channel = %+v, %v", got, err)
	}
	all, err := c.Channels(ctx)
	if err != nil || len(all) != 1 || all[0].Credentials != "tok-very-secret" {
		t.Fatalf("Channels = %+v, %v", all, err)
	}
	// Without keys the store writes nothing in plain text.
	bare := open(t, store.WithSecrets(nil))
	if _, err := bare.Catalog(tn.Schema).CreateChannel(ctx, catalog.Channel{Market: "souk", BaseURL: "https://souk.example", Credentials: "x", RateLimitPerSec: 1}); !errors.Is(err, store.ErrNoSecrets) {
		t.Fatalf("create without keys: %v, want ErrNoSecrets", err)
	}
}

// A sealed value is bound to its tenant and row: copied to another row, or
// to a row of another tenant, it does not open.
func TestChannel_credentials_moved_to_another_row_do_not_open(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, store.WithSecrets(keyring(t, "k0")))
	a, b := newTenantIn(t, s), newTenantIn(t, s)
	ca, cb := s.Catalog(a.Schema), s.Catalog(b.Schema)
	victim, _ := ca.CreateChannel(ctx, catalog.Channel{Market: "souk", BaseURL: "https://souk.example", Credentials: "victim-token", RateLimitPerSec: 5})
	mine, _ := ca.CreateChannel(ctx, catalog.Channel{Market: "souk", BaseURL: "https://souk.example", Credentials: "mine", RateLimitPerSec: 5})
	other, _ := cb.CreateChannel(ctx, catalog.Channel{Market: "souk", BaseURL: "https://souk.example", Credentials: "other", RateLimitPerSec: 5})
	sealed := storedCredentials(t, s, a, victim.ID)

	setCredentials(t, s, a, mine.ID, sealed)
	if got, err := ca.Channel(ctx, mine.ID); !errors.Is(err, secret.ErrOpen) {
		t.Fatalf("another row of the tenant: %+v, %v; want ErrOpen", got, err)
	}
	setCredentials(t, s, b, other.ID, sealed)
	if got, err := cb.Channel(ctx, other.ID); !errors.Is(err, secret.ErrOpen) {
		t.Fatalf("a row of another tenant: %+v, %v; want ErrOpen", got, err)
	}
	if got, err := ca.Channel(ctx, victim.ID); err != nil || got.Credentials != "victim-token" {
		t.Fatalf("the original row: %+v, %v", got, err)
	}
}

// Rotation: add the new key first (old values still open), re-encrypt
// (every value, plain-text rows of before included, now under the new
// key), then drop the old key.
func TestReencryptChannels_rotates_keys_and_seals_plain_rows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	old := open(t, store.WithSecrets(keyring(t, "k0")))
	tn := newTenantIn(t, old)
	sealedCh, err := old.Catalog(tn.Schema).CreateChannel(ctx, catalog.Channel{Market: "souk", BaseURL: "https://souk.example", Credentials: "tok-a", RateLimitPerSec: 5})
	if err != nil {
		t.Fatal(err)
	}
	plainCh, err := old.Catalog(tn.Schema).CreateChannel(ctx, catalog.Channel{Market: "bazaar", BaseURL: "https://bazaar.example", Credentials: "x", RateLimitPerSec: 5})
	if err != nil {
		t.Fatal(err)
	}
	setCredentials(t, old, tn, plainCh.ID, "tok-legacy") // as written before sealing

	both := open(t, store.WithSecrets(keyring(t, "k1", "k0")))
	c := both.Catalog(tn.Schema)
	for id, want := range map[string]string{sealedCh.ID: "tok-a", plainCh.ID: "tok-legacy"} {
		if got, err := c.Channel(ctx, id); err != nil || got.Credentials != want {
			t.Fatalf("before re-encryption, %s: %+v, %v", id, got, err)
		}
	}
	if n, err := c.ReencryptChannels(ctx); err != nil || n != 2 {
		t.Fatalf("ReencryptChannels = %d, %v; want 2", n, err)
	}
	if n, err := c.ReencryptChannels(ctx); err != nil || n != 0 {
		t.Fatalf("ReencryptChannels again = %d, %v; want 0", n, err)
	}
	for _, id := range []string{sealedCh.ID, plainCh.ID} {
		if raw := storedCredentials(t, both, tn, id); !strings.HasPrefix(raw, secret.Prefix+"k1:") {
			t.Fatalf("after re-encryption %s holds %q, want sealed under k1", id, raw)
		}
	}
	newOnly := open(t, store.WithSecrets(keyring(t, "k1")))
	for id, want := range map[string]string{sealedCh.ID: "tok-a", plainCh.ID: "tok-legacy"} {
		if got, err := newOnly.Catalog(tn.Schema).Channel(ctx, id); err != nil || got.Credentials != want {
			t.Fatalf("with k0 removed, %s: %+v, %v", id, got, err)
		}
	}
	// Before re-encryption, removing k0 would have locked the channel out.
	if _, err := old.Catalog(tn.Schema).Channel(ctx, sealedCh.ID); !errors.Is(err, secret.ErrNoKey) {
		t.Fatalf("k0 alone on a k1 value: %v, want ErrNoKey", err)
	}
}

// The cap holds under concurrent creates: the count and the insert are one
// transaction under the tenant's lock. Another tenant has its own cap.
func TestCreateChannel_caps_channels_per_tenant(t *testing.T) {
	testenv.Chaos(t, "9. 12 concurrent channel creates against a cap of 3", "exactly 3 created; other tenants unaffected")
	t.Parallel()
	ctx := context.Background()
	const limit = 3
	s := open(t, store.WithMaxChannels(limit))
	a, b := newTenantIn(t, s), newTenantIn(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for range 12 {
		wg.Go(func() {
			_, err := s.Catalog(a.Schema).CreateChannel(ctx, catalog.Channel{Market: "souk", BaseURL: "https://souk.example", Credentials: "t", RateLimitPerSec: 1})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	ok, refused := 0, 0
	for err := range errs {
		var lim *catalog.ChannelLimitError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &lim) && lim.Limit == limit && errors.Is(err, catalog.ErrTooManyChannels):
			refused++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if ok != limit || refused != 12-limit {
		t.Fatalf("%d created, %d refused; want %d and %d", ok, refused, limit, 12-limit)
	}
	if chs, _ := s.Catalog(a.Schema).Channels(ctx); len(chs) != limit {
		t.Fatalf("%d channels stored, want %d", len(chs), limit)
	}
	if _, err := s.Catalog(b.Schema).CreateChannel(ctx, catalog.Channel{Market: "souk", BaseURL: "https://souk.example", Credentials: "t", RateLimitPerSec: 1}); err != nil {
		t.Fatalf("another tenant: %v", err)
	}
	// A deleted channel frees its place.
	chs, _ := s.Catalog(a.Schema).Channels(ctx)
	if err := s.Catalog(a.Schema).DeleteChannel(ctx, chs[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Catalog(a.Schema).CreateChannel(ctx, catalog.Channel{Market: "souk", BaseURL: "https://souk.example", Credentials: "t", RateLimitPerSec: 1}); err != nil {
		t.Fatalf("after a delete: %v", err)
	}
}
