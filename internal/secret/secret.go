// Package secret encrypts small secrets at rest (a channel's market
// credentials) with AES-256-GCM under a keyring of named keys: the first key
// encrypts, every key decrypts, so keys can be rotated without downtime (add
// the new key first, re-encrypt, then drop the old one).
//
// A sealed value is text, so it fits the column the plain text used to:
// "sfenc1:<key id>:<base64url(nonce || ciphertext || tag)>". Every value has
// its own random 96-bit nonce, and the caller's additional data (such as the
// tenant's schema and the row's id) is authenticated with it, so that a
// ciphertext copied to another row or tenant does not open.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Prefix starts every sealed value; text without it is not sealed.
const Prefix = "sfenc1:"

// KeySize is the length of a key: AES-256.
const KeySize = 32

// ErrNoKey means the value was sealed under a key the keyring lacks.
var ErrNoKey = errors.New("secret: no key with that id")

// ErrOpen means the value does not open: tampered with, truncated, or bound
// to other additional data.
var ErrOpen = errors.New("secret: value does not open (wrong key, tampered or moved)")

// DevKeys is the fixed keyring of `sagaflow dev`: public, so it protects
// nothing; never use it outside dev.
const DevKeys = "dev:ZGV2LWtleS1ub3Qtc2VjcmV0LWRvLW5vdC11c2UhISE"

// Keyring holds the keys by id; the first encrypts. Safe for concurrent
// use; immutable once built.
type Keyring struct {
	primary string
	aeads   map[string]cipher.AEAD
	order   []string
}

// Parse reads a keyring: "id1:base64key,id0:base64key", newest first. Ids
// are 1-32 characters of [A-Za-z0-9_-]; keys are 32 bytes in standard or
// URL-safe base64, padded or not.
func Parse(spec string) (*Keyring, error) {
	k := &Keyring{aeads: map[string]cipher.AEAD{}}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, b64, ok := strings.Cut(part, ":")
		if !ok || !validID(id) {
			return nil, fmt.Errorf("secret: key %d: want id:base64key with an id of 1-32 characters [A-Za-z0-9_-]", len(k.order)+1)
		}
		if _, dup := k.aeads[id]; dup {
			return nil, fmt.Errorf("secret: key id %q appears twice", id)
		}
		raw, err := decodeKey(b64)
		if err != nil || len(raw) != KeySize {
			return nil, fmt.Errorf("secret: key %q: want %d bytes in base64", id, KeySize)
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("secret: key %q: %w", id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("secret: key %q: %w", id, err)
		}
		k.aeads[id] = aead
		k.order = append(k.order, id)
	}
	if len(k.order) == 0 {
		return nil, errors.New("secret: no keys")
	}
	k.primary = k.order[0]
	return k, nil
}

func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

func validID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// Primary is the id of the key that seals.
func (k *Keyring) Primary() string { return k.primary }

// IDs are the key ids, newest first.
func (k *Keyring) IDs() []string { return append([]string(nil), k.order...) }

// Seal encrypts plain under the primary key, bound to aad.
func (k *Keyring) Seal(plain string, aad []byte) (string, error) {
	aead := k.aeads[k.primary]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("secret: nonce: %w", err)
	}
	out := aead.Seal(nonce, nonce, []byte(plain), aad)
	return Prefix + k.primary + ":" + base64.RawURLEncoding.EncodeToString(out), nil
}

// Open decrypts a value Seal made with the same aad. It also reports the id
// of the key the value was sealed under.
func (k *Keyring) Open(sealed string, aad []byte) (plain, keyID string, err error) {
	rest, ok := strings.CutPrefix(sealed, Prefix)
	if !ok {
		return "", "", errors.New("secret: not a sealed value")
	}
	keyID, b64, ok := strings.Cut(rest, ":")
	if !ok {
		return "", "", ErrOpen
	}
	aead, ok := k.aeads[keyID]
	if !ok {
		return "", keyID, fmt.Errorf("%w %q", ErrNoKey, keyID)
	}
	raw, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil || len(raw) < aead.NonceSize()+aead.Overhead() {
		return "", keyID, ErrOpen
	}
	nonce, ct := raw[:aead.NonceSize()], raw[aead.NonceSize():]
	p, err := aead.Open(nil, nonce, ct, aad)
	if err != nil {
		return "", keyID, ErrOpen
	}
	return string(p), keyID, nil
}

// IsSealed reports whether s is a value Seal made (by its prefix).
func IsSealed(s string) bool { return strings.HasPrefix(s, Prefix) }
