package temporalclient

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"
)

// Metadata of an encrypted payload.
const (
	// EncodingEncrypted is the "encoding" of a payload the codec encrypted.
	EncodingEncrypted = "binary/encrypted"
	// MetadataKeyID names the key that encrypted the payload, so that keys
	// can rotate: a payload is decrypted with the key it names.
	MetadataKeyID = "encryption-key-id"
)

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// PayloadKey is one AES-256 key of the payload codec and its id.
type PayloadKey struct {
	ID  string
	Key []byte // 32 bytes
}

// ParsePayloadKeys reads SAGAFLOW_PAYLOAD_KEYS: comma-separated id:key
// pairs, each key 32 bytes in standard base64 ("2026-12:q83v...,2026-06:..."),
// the first one encrypting and every one decrypting. Empty means no keys.
// Errors never contain key material.
func ParsePayloadKeys(s string) ([]PayloadKey, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var keys []PayloadKey
	seen := map[string]bool{}
	for i, part := range strings.Split(s, ",") {
		id, b64, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok || !keyIDPattern.MatchString(id) {
			return nil, fmt.Errorf("payload key %d: want id:base64key with an id of 1-64 letters, digits, '.', '_' or '-'", i+1)
		}
		if seen[id] {
			return nil, fmt.Errorf("payload key %q: listed twice", id)
		}
		seen[id] = true
		key, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(key) != 32 {
			return nil, fmt.Errorf("payload key %q: want 32 bytes in standard base64 (openssl rand -base64 32)", id)
		}
		keys = append(keys, PayloadKey{ID: id, Key: key})
	}
	return keys, nil
}

// AESCodec is a converter.PayloadCodec that encrypts every payload with
// AES-256-GCM: the whole payload (its metadata and data) is sealed into the
// data of a new payload whose metadata says EncodingEncrypted and names the
// key. Payloads without that encoding are passed through undecoded, so
// histories written before encryption was turned on still replay. Safe for
// concurrent use.
type AESCodec struct {
	current string
	aeads   map[string]cipher.AEAD
}

// NewAESCodec returns a codec that encrypts with keys[0] and decrypts with
// any of keys.
func NewAESCodec(keys []PayloadKey) (*AESCodec, error) {
	if len(keys) == 0 {
		return nil, errors.New("temporal: payload codec: no key")
	}
	c := &AESCodec{current: keys[0].ID, aeads: map[string]cipher.AEAD{}}
	for _, k := range keys {
		block, err := aes.NewCipher(k.Key)
		if err != nil {
			return nil, fmt.Errorf("temporal: payload key %q: %w", k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("temporal: payload key %q: %w", k.ID, err)
		}
		c.aeads[k.ID] = aead
	}
	return c, nil
}

// Encode encrypts each payload with the current key.
func (c *AESCodec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	aead := c.aeads[c.current]
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("temporal: encrypt payload: %w", err)
		}
		nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("temporal: encrypt payload: %w", err)
		}
		// The key id is authenticated: a payload cannot be passed off as
		// sealed by another key.
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte(EncodingEncrypted),
				MetadataKeyID:              []byte(c.current),
			},
			Data: aead.Seal(nonce, nonce, plain, []byte(c.current)),
		}
	}
	return out, nil
}

// Decode decrypts each encrypted payload with the key it names and passes
// the others through.
func (c *AESCodec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != EncodingEncrypted {
			out[i] = p
			continue
		}
		id := string(p.GetMetadata()[MetadataKeyID])
		aead, ok := c.aeads[id]
		if !ok {
			return nil, fmt.Errorf("temporal: decrypt payload: unknown key id %q (is it still in SAGAFLOW_PAYLOAD_KEYS?)", id)
		}
		data := p.GetData()
		if len(data) < aead.NonceSize()+aead.Overhead() {
			return nil, errors.New("temporal: decrypt payload: too short")
		}
		plain, err := aead.Open(nil, data[:aead.NonceSize()], data[aead.NonceSize():], []byte(id))
		if err != nil {
			return nil, fmt.Errorf("temporal: decrypt payload with key %q: %w", id, err)
		}
		var dec commonpb.Payload
		if err := proto.Unmarshal(plain, &dec); err != nil {
			return nil, fmt.Errorf("temporal: decrypt payload: %w", err)
		}
		out[i] = &dec
	}
	return out, nil
}

// NewDataConverter returns the SDK's default data converter with payloads
// encrypted by the keys, or the default converter itself when there are no
// keys. The client and every worker and replayer of the process must use
// the same one.
func NewDataConverter(keys []PayloadKey) (converter.DataConverter, error) {
	if len(keys) == 0 {
		return converter.GetDefaultDataConverter(), nil
	}
	codec, err := NewAESCodec(keys)
	if err != nil {
		return nil, err
	}
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), codec), nil
}
