package config

import (
	"slices"
	"strings"
	"testing"
)

func TestLoad_market_hardening_settings(t *testing.T) {
	c, err := Load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Dev() || c.Env != EnvProduction || c.MaxChannelsPerTenant != 50 || c.SecretKeys != "" {
		t.Fatalf("defaults: env %q, max channels %d", c.Env, c.MaxChannelsPerTenant)
	}
	const key = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	for _, tt := range []struct {
		env  string
		want string
	}{
		{"SAGAFLOW_ENV=staging", "SAGAFLOW_ENV"},
		{"SAGAFLOW_SECRET_KEYS=k1:c2hvcnQ=", "SAGAFLOW_SECRET_KEYS"},
		{"SAGAFLOW_MAX_CHANNELS_PER_TENANT=0", "SAGAFLOW_MAX_CHANNELS_PER_TENANT"},
		{"SAGAFLOW_MARKET_HOSTS_SOUK=https://souk.example/x", "SAGAFLOW_MARKET_HOSTS_SOUK"},
	} {
		_, err := Load([]string{tt.env}, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error naming %s", tt.env, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "c2hvcnQ") {
			t.Errorf("the error quotes the key: %v", err)
		}
	}
	if _, err := Load([]string{"SAGAFLOW_SECRET_KEYS=" + key}, nil); err != nil {
		t.Fatalf("a good key: %v", err)
	}
}

func TestConfig_MarketHosts(t *testing.T) {
	c, err := Load([]string{"SAGAFLOW_MARKET_HOSTS_SHOPWAVE=API.shopwave.example, eu.shopwave.example:8443",
		"SAGAFLOW_MARKET_SHOPWAVE_URL=https://api.shopwave.example"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.MarketHosts()["shopwave"]; !slices.Equal(got, []string{"api.shopwave.example", "eu.shopwave.example:8443"}) {
		t.Fatalf("production shopwave hosts %v", got)
	}
	if got := c.MarketHosts()["souk"]; !slices.Equal(got, []string{"127.0.0.1:8094"}) {
		t.Fatalf("souk hosts %v: want the default URL's only", got)
	}
	c.Env = EnvDev
	c.SimSoukAddr = "127.0.0.1:9999"
	if got := c.MarketHosts()["souk"]; !slices.Equal(got, []string{"127.0.0.1:8094", "127.0.0.1:9999"}) {
		t.Fatalf("dev souk hosts %v: want the simulator too", got)
	}
}
