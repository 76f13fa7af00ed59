// Package tenant holds the rules for tenants and their API keys. A tenant's
// data lives in its own PostgreSQL schema; its API keys are stored only as
// SHA-256 hashes, which is enough for keys of 256 random bits.
package tenant

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
)

// Tenant is one customer of sagaflow.
type Tenant struct {
	// Name is the tenant's identifier, as in workflow IDs and logs.
	Name string
	// Schema is the PostgreSQL schema that holds the tenant's data.
	Schema string
}

// KeyHash is the stored form of an API key.
type KeyHash [sha256.Size]byte

var (
	// ErrNotFound means no tenant (or key) matched.
	ErrNotFound = errors.New("tenant not found")
	// ErrExists means a tenant of that name exists already.
	ErrExists = errors.New("tenant exists already")
)

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{1,30}$`)

// New returns the tenant called name, or an error saying why the name is not
// allowed: 2 to 31 characters, lowercase letters, digits and underscores,
// starting with a letter (it becomes part of a schema name and of IDs).
func New(name string) (Tenant, error) {
	if !namePattern.MatchString(name) {
		return Tenant{}, fmt.Errorf("tenant name %q: want 2-31 of [a-z0-9_], starting with a letter", name)
	}
	return Tenant{Name: name, Schema: "tenant_" + name}, nil
}

// NewKey returns a fresh random API key. Show it once; store only HashKey(key).
func NewKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("tenant: new key: %w", err)
	}
	return "sf_" + base64.RawURLEncoding.EncodeToString(b), nil
}

// HashKey is the stored form of key.
func HashKey(key string) KeyHash { return sha256.Sum256([]byte(key)) }
