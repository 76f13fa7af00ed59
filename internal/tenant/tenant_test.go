package tenant

import (
	"strings"
	"testing"
)

func TestNew_validates_names(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"demo", true},
		{"acme_2", true},
		{"a", false},
		{"Demo", false},
		{"1acme", false},
		{"acme-corp", false},
		{"acme; drop schema", false},
		{strings.Repeat("a", 32), false},
	}
	for _, tt := range tests {
		got, err := New(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("New(%q) error = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err == nil && got.Schema != "tenant_"+tt.name {
			t.Errorf("New(%q).Schema = %q", tt.name, got.Schema)
		}
	}
}

func TestNewKey_is_random_and_hash_is_stable(t *testing.T) {
	a, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewKey()
	if a == b || !strings.HasPrefix(a, "sf_") || len(a) < 40 {
		t.Fatalf("keys not random or too short: %q %q", a, b)
	}
	if first, again := HashKey(a), HashKey(a); first != again || first == HashKey(b) {
		t.Fatal("hash not a function of the key")
	}
}
