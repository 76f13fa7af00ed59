package backoff

import (
	"context"
	"testing"
	"time"
)

func TestExp_doubles_from_base_up_to_max(t *testing.T) {
	for _, tt := range []struct {
		attempt int
		want    time.Duration
	}{
		{0, 100 * time.Millisecond}, // no failure yet counts as the first
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{5, 1600 * time.Millisecond},
		{10, 30 * time.Second},
		{1000, 30 * time.Second}, // no overflow
	} {
		if got := Exp(tt.attempt, 100*time.Millisecond, 30*time.Second); got != tt.want {
			t.Errorf("Exp(%d) = %s, want %s", tt.attempt, got, tt.want)
		}
	}
}

func TestSleep_is_cut_short_by_its_context(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep with a live context did not wait")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep with a cancelled context reported a full wait")
	}
}
