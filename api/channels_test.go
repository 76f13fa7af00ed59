package api

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/sagaflow/sagaflow/internal/catalog"
)

// channelStore answers CreateChannel with err, or else records the channel.
type channelStore struct {
	CatalogStore // the other methods are not called
	err          error
	created      []catalog.Channel
}

func (s *channelStore) CreateChannel(_ context.Context, ch catalog.Channel) (catalog.Channel, error) {
	if s.err != nil {
		return catalog.Channel{}, s.err
	}
	s.created = append(s.created, ch)
	return ch, nil
}

func channelHandler(t *testing.T, cs *channelStore) http.Handler {
	t.Helper()
	return testHandler(t, Deps{
		Tenants: demoTenants(),
		Catalog: func(string) CatalogStore { return cs },
		Markets: []MarketInfo{{Name: "shopwave", BaseURL: "https://api.shopwave.example"}, {Name: "souk", BaseURL: "https://api.souk.example"}},
		Sync: SyncConfig{Shards: 1, Channels: catalog.ChannelPolicy{Hosts: map[string][]string{
			"shopwave": {"api.shopwave.example"}, "souk": {"api.souk.example"}}}},
		MaxBodyBytes: 4096,
	})
}

// Every base_url that is not scheme, host and port of an allowed host is a
// 400 whose fields name base_url; nothing is stored.
func TestCreateChannel_bad_base_url_is_400_naming_base_url(t *testing.T) {
	t.Parallel()
	cs := &channelStore{}
	h := channelHandler(t, cs)
	for _, u := range []string{
		"http://127.0.0.1:8093", "https://127.0.0.1", "https://10.0.0.7", "https://169.254.169.254", "https://[::1]",
		"https://api.shopwave.example/v2?", "https://api.shopwave.example/?x=1", "https://api.shopwave.example#f",
		"https://u:p@api.shopwave.example", "http://api.shopwave.example", "https://api.souk.example", "gopher://x", "not a url",
	} {
		body, _ := json.Marshal(map[string]any{"market": "shopwave", "base_url": u, "credentials": "tok"})
		rec, e := do(h, http.MethodPost, "/v1/channels", "demo-key", string(body))
		named := false
		for _, f := range e.Error.Fields {
			named = named || f.Field == "base_url"
		}
		if rec.Code != http.StatusBadRequest || e.Error.Code != "bad_request" || !named {
			t.Errorf("base_url %q: %d %+v, want 400 naming base_url", u, rec.Code, e.Error)
		}
	}
	if len(cs.created) != 0 {
		t.Fatalf("%d channels stored", len(cs.created))
	}
}

// A tenant at its cap gets a 409 that names the limit.
func TestCreateChannel_over_the_cap_is_409_naming_the_limit(t *testing.T) {
	t.Parallel()
	h := channelHandler(t, &channelStore{err: &catalog.ChannelLimitError{Limit: 50}})
	rec, _ := do(h, http.MethodPost, "/v1/channels", "demo-key", `{"market":"souk","credentials":"tok"}`)
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Limit   int    `json:"limit"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusConflict || body.Error.Code != "too_many_channels" || body.Error.Limit != 50 ||
		body.Error.Message == "" {
		t.Fatalf("%d %s, want 409 too_many_channels with limit 50", rec.Code, rec.Body)
	}
}
