package queue_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sagaflow/sagaflow/internal/coupon"
	"github.com/sagaflow/sagaflow/internal/queue"
)

// keySlot is the Redis Cluster slot of key: CRC16 (XMODEM) of its hash tag,
// the part between the first "{" and the first "}" after it if that is not
// empty, else of the whole key, modulo 16384 (redis.io cluster spec).
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

func TestKeySlot_matches_redis(t *testing.T) {
	// From redis.io: CLUSTER KEYSLOT and the cluster spec's CRC16 test vector.
	for key, want := range map[string]int{"somekey": 11058, "foo{hash_tag}": 2515, "123456789": 0x31C3 % 16384} {
		if got := keySlot(key); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, want)
		}
	}
	if keySlot("{user1000}.following") != keySlot("{user1000}.followers") {
		t.Error("keys with one tag must share a slot")
	}
	if keySlot("foo{}{bar}") == keySlot("bar") {
		t.Error("an empty first tag must hash the whole key")
	}
}

// scriptCalls records the keys of every script a client runs.
type scriptCalls struct {
	mu    sync.Mutex
	calls []scriptCall
}

type scriptCall struct {
	sha  string // the script's SHA1 (EVALSHA) or its body (EVAL); MULTI or DEL
	keys []string
}

func (s *scriptCalls) DialHook(next redis.DialHook) redis.DialHook { return next }
func (s *scriptCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && cmds[0].Name() == "multi" {
			// A transaction, like a script, must stay within one slot.
			var keys []string
			for _, c := range cmds[1:] {
				keys = append(keys, commandKeys(c)...)
			}
			s.mu.Lock()
			s.calls = append(s.calls, scriptCall{sha: "MULTI", keys: keys})
			s.mu.Unlock()
		}
		for _, c := range cmds {
			s.record(c)
		}
		return next(ctx, cmds)
	}
}

// commandKeys are the keys of the commands the package sends in a
// transaction or with several keys (DEL takes keys only, the others one).
func commandKeys(c redis.Cmder) []string {
	args := c.Args()
	switch c.Name() {
	case "exec":
		return nil
	case "del", "unlink":
		keys := make([]string, 0, len(args)-1)
		for _, a := range args[1:] {
			keys = append(keys, fmt.Sprint(a))
		}
		return keys
	}
	return []string{fmt.Sprint(args[1])}
}
func (s *scriptCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		s.record(cmd)
		return next(ctx, cmd)
	}
}

func (s *scriptCalls) record(cmd redis.Cmder) {
	name := strings.ToLower(cmd.Name())
	if name == "del" || name == "unlink" {
		s.mu.Lock()
		s.calls = append(s.calls, scriptCall{sha: strings.ToUpper(name), keys: commandKeys(cmd)})
		s.mu.Unlock()
		return
	}
	if name != "eval" && name != "evalsha" && name != "eval_ro" && name != "evalsha_ro" && name != "fcall" {
		return
	}
	args := cmd.Args()
	n, _ := args[2].(int)
	keys := make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprint(args[3+i])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, scriptCall{sha: fmt.Sprint(args[1]), keys: keys})
}

// scriptsInPackage counts the Lua scripts internal/queue defines.
func scriptsInPackage(t *testing.T) int {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n += strings.Count(string(b), "redis.NewScript(")
	}
	return n
}

// TestScripts_keys_share_one_slot runs every operation that runs a Lua
// script, a transaction or a multi-key DEL, records the keys each receives,
// and checks that they hash
// to one Redis Cluster slot (else the cluster answers CROSSSLOT), the slot
// of the campaign's own tag, so that campaigns spread over the shards.
func TestScripts_keys_share_one_slot(t *testing.T) {
	ctx := context.Background()
	// internal/config refuses a prefix with braces, so the tag is always
	// the campaign's own whatever the prefix.
	for _, prefix := range []string{rdb.Prefix() + "slots:", rdb.Prefix() + "slots:-._/:"} {
		t.Run(prefix, func(t *testing.T) {
			r, err := queue.Open(ctx, redisURL, prefix)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			rec := &scriptCalls{}
			r.Client.AddHook(rec)
			now, err := r.Client.Time(ctx).Result()
			if err != nil {
				t.Fatal(err)
			}
			c := queue.Campaign{Tenant: "demo", ID: "slot-campaign-" + fmt.Sprint(now.UnixNano()), Stock: 3,
				StartsAt: now.Add(-time.Second), EndsAt: now.Add(time.Hour)}
			defer func() { _ = r.DeleteCampaign(ctx, c.Tenant, c.ID) }()
			if err := r.OpenCampaign(ctx, c); err != nil {
				t.Fatal(err)
			}
			if _, err := r.MarkAsleep(ctx, c.Tenant, c.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Ask(ctx, c.Tenant, c.ID, "ann"); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Pending(ctx, c.Tenant, c.ID, 10); err != nil {
				t.Fatal(err)
			}
			if _, err := r.SetAside(ctx, c.Tenant, c.ID, []coupon.SetAside{{User: "ann", Rank: 1, Reason: "test"}}); err != nil {
				t.Fatal(err)
			}

			if err := r.RemoveCampaign(ctx, c.Tenant, c.ID, false, time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := r.DeleteCampaign(ctx, c.Tenant, c.ID); err != nil {
				t.Fatal(err)
			}

			scripts := map[string]bool{}
			var multi, del bool
			for _, call := range rec.calls {
				switch call.sha {
				case "MULTI":
					multi = true
				case "DEL", "UNLINK":
					del = true
				default:
					scripts[call.sha] = true
				}
				if len(call.keys) == 0 {
					t.Errorf("script %.12s gets no KEYS: a script must name every key it touches", call.sha)
					continue
				}
				want := keySlot(call.keys[0])
				for _, k := range call.keys {
					if keySlot(k) != want {
						t.Errorf("script %.12s: key %q is in slot %d, %q in %d: CROSSSLOT on Redis Cluster", call.sha, k, keySlot(k), call.keys[0], want)
					}
				}
				if want != keySlot("{"+c.Tenant+":"+c.ID+"}") {
					t.Errorf("script %.12s: keys %v are not in the campaign's slot {%s:%s}", call.sha, call.keys, c.Tenant, c.ID)
				}
			}
			if !multi || !del {
				t.Errorf("saw a transaction %v and a multi-key DEL %v, want both (RemoveCampaign, DeleteCampaign)", multi, del)
			}
			if n := scriptsInPackage(t); len(scripts) != n {
				t.Errorf("the operations above ran %d distinct scripts, internal/queue defines %d: run the new one here", len(scripts), n)
			}
		})
	}
}
