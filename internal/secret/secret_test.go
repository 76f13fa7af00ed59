package secret_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/sagaflow/sagaflow/internal/secret"
)

func key(b byte) string {
	k := make([]byte, secret.KeySize)
	for i := range k {
		k[i] = b
	}
	return base64.StdEncoding.EncodeToString(k)
}

func TestSeal_round_trip_and_rotation(t *testing.T) {
	t.Parallel()
	old, err := secret.Parse("k0:" + key(1))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := old.Seal("tok-123", []byte("tenant_a/ch1"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "tok-123") || !secret.IsSealed(sealed) || !strings.HasPrefix(sealed, secret.Prefix+"k0:") {
		t.Fatalf("sealed %q", sealed)
	}
	again, _ := old.Seal("tok-123", []byte("tenant_a/ch1"))
	if again == sealed {
		t.Fatal("two seals of one value are equal: the nonce is not fresh")
	}
	// A new key in front: it seals, the old one still opens.
	both, err := secret.Parse("k1:" + key(2) + ", k0:" + key(1))
	if err != nil {
		t.Fatal(err)
	}
	if p, id, err := both.Open(sealed, []byte("tenant_a/ch1")); err != nil || p != "tok-123" || id != "k0" {
		t.Fatalf("Open = %q, %q, %v", p, id, err)
	}
	if s, _ := both.Seal("x", nil); !strings.HasPrefix(s, secret.Prefix+"k1:") {
		t.Fatalf("sealed under %q, want k1", s)
	}
	// The old key removed: values sealed under it no longer open.
	newOnly, _ := secret.Parse("k1:" + key(2))
	if _, _, err := newOnly.Open(sealed, []byte("tenant_a/ch1")); !errors.Is(err, secret.ErrNoKey) {
		t.Fatalf("Open without k0 = %v, want ErrNoKey", err)
	}
}

func TestOpen_refuses_other_aad_and_tampering(t *testing.T) {
	t.Parallel()
	k, _ := secret.Parse("k0:" + key(1))
	sealed, _ := k.Seal("tok", []byte("tenant_a/ch1"))
	for name, tt := range map[string]struct{ value, aad string }{
		"other_row":    {sealed, "tenant_a/ch2"},
		"other_tenant": {sealed, "tenant_b/ch1"},
		"tampered":     {sealed[:len(sealed)-2] + "AA", "tenant_a/ch1"},
		"truncated":    {sealed[:len(secret.Prefix)+6], "tenant_a/ch1"},
		"no_key_id":    {secret.Prefix + "garbage", "tenant_a/ch1"},
	} {
		if _, _, err := k.Open(tt.value, []byte(tt.aad)); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
}

func TestParse_refuses_bad_keyrings(t *testing.T) {
	t.Parallel()
	for _, spec := range []string{"", "k0", "k0:" + base64.StdEncoding.EncodeToString([]byte("short")), "k0:" + key(1) + ",k0:" + key(2), "bad id:" + key(1), "k0:!!!"} {
		if _, err := secret.Parse(spec); err == nil {
			t.Errorf("Parse(%q) accepted", spec)
		}
	}
	if _, err := secret.Parse(secret.DevKeys); err != nil {
		t.Fatalf("dev keys: %v", err)
	}
}
