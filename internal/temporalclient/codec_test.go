package temporalclient_test

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/sagaflow/sagaflow/internal/temporalclient"
)

func key(id string, b byte) string {
	return id + ":" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32))
}

func dataConverter(t *testing.T, spec string) converter.DataConverter {
	t.Helper()
	keys, err := temporalclient.ParsePayloadKeys(spec)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := temporalclient.NewDataConverter(keys)
	if err != nil {
		t.Fatal(err)
	}
	return dc
}

type joinInput struct {
	JoinID       string `json:"join_id"`
	PaymentToken string `json:"payment_token"`
}

func TestCodec_encrypts_the_token_and_decodes_it_back(t *testing.T) {
	dc := dataConverter(t, key("k1", 1))
	in := joinInput{JoinID: "j_1", PaymentToken: "tok_visa_4242_secret"}
	p, err := dc.ToPayload(in)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(p.GetData(), []byte("tok_visa")) || bytes.Contains(p.GetData(), []byte("j_1")) {
		t.Fatal("the payload holds the input in the clear")
	}
	if string(p.GetMetadata()["encoding"]) != temporalclient.EncodingEncrypted || string(p.GetMetadata()[temporalclient.MetadataKeyID]) != "k1" {
		t.Fatalf("metadata %v", p.GetMetadata())
	}
	var out joinInput
	if err := dc.FromPayload(p, &out); err != nil || out != in {
		t.Fatalf("decoded %+v, %v", out, err)
	}
}

func TestCodec_rotation_decrypts_with_the_key_a_payload_names(t *testing.T) {
	old := dataConverter(t, key("2026-06", 1))
	p, err := old.ToPayload("before rotation")
	if err != nil {
		t.Fatal(err)
	}
	rotated := dataConverter(t, key("2026-12", 2)+","+key("2026-06", 1))
	var s string
	if err := rotated.FromPayload(p, &s); err != nil || s != "before rotation" {
		t.Fatalf("after rotation: %q, %v", s, err)
	}
	q, _ := rotated.ToPayload("after")
	if string(q.GetMetadata()[temporalclient.MetadataKeyID]) != "2026-12" {
		t.Fatal("the first key does not encrypt")
	}
	// A process that dropped the old key says which one it lacks.
	dropped := dataConverter(t, key("2026-12", 2))
	if err := dropped.FromPayload(p, &s); err == nil || !strings.Contains(err.Error(), `"2026-06"`) {
		t.Fatalf("decode without the key: %v", err)
	}
}

func TestCodec_passes_clear_payloads_through_and_refuses_tampered_ones(t *testing.T) {
	dc := dataConverter(t, key("k1", 1))
	clear, err := converter.GetDefaultDataConverter().ToPayload("written before encryption")
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if err := dc.FromPayload(clear, &s); err != nil || s != "written before encryption" {
		t.Fatalf("clear payload: %q, %v", s, err)
	}
	p, _ := dc.ToPayload("x")
	for name, bad := range map[string]*commonpb.Payload{
		"flipped_bit": {Metadata: p.Metadata, Data: append(append([]byte{}, p.Data[:len(p.Data)-1]...), p.Data[len(p.Data)-1]^1)},
		"short":       {Metadata: p.Metadata, Data: p.Data[:5]},
		"other_key_id": {Metadata: map[string][]byte{"encoding": []byte(temporalclient.EncodingEncrypted),
			temporalclient.MetadataKeyID: []byte("k2")}, Data: p.Data},
	} {
		if err := dc.FromPayload(bad, &s); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	// The key id is authenticated: relabelling under another known key fails.
	two := dataConverter(t, key("k1", 1)+","+key("k2", 1))
	relabelled := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte(temporalclient.EncodingEncrypted),
		temporalclient.MetadataKeyID: []byte("k2")}, Data: p.Data}
	if err := two.FromPayload(relabelled, &s); err == nil {
		t.Error("a payload relabelled with another key id decoded")
	}
}

func TestParsePayloadKeys(t *testing.T) {
	if keys, err := temporalclient.ParsePayloadKeys(""); err != nil || keys != nil {
		t.Fatalf("empty: %v, %v", keys, err)
	}
	keys, err := temporalclient.ParsePayloadKeys(" " + key("a", 1) + " , " + key("b.2", 2))
	if err != nil || len(keys) != 2 || keys[0].ID != "a" || keys[1].ID != "b.2" || len(keys[1].Key) != 32 {
		t.Fatalf("two keys: %+v, %v", keys, err)
	}
	secret := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16))
	for name, spec := range map[string]string{
		"no_id":       ":" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)),
		"no_colon":    base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)),
		"short_key":   "k:" + secret,
		"not_base64":  "k:%%%",
		"duplicate":   key("k", 1) + "," + key("k", 2),
		"bad_id_char": key("k/1", 1),
	} {
		_, err := temporalclient.ParsePayloadKeys(spec)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error shows the key: %v", name, err)
		}
	}
}
