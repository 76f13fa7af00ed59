package coupon

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/valid"
)

func TestCampaign_Validate_names_each_field(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	ok := Campaign{Name: "Black Friday", Stock: 10, StartsAt: now, EndsAt: now.Add(time.Hour)}
	if err := ok.Validate(now); err != nil {
		t.Fatalf("valid campaign refused: %v", err)
	}
	tests := []struct {
		name string
		edit func(*Campaign)
		want []string
	}{
		{"nul_in_name", func(c *Campaign) { c.Name = "a\x00b" }, []string{"name"}},
		{"invalid_utf8_name", func(c *Campaign) { c.Name = "\xff" }, []string{"name"}},
		{"long_name", func(c *Campaign) { c.Name = strings.Repeat("가", 201) }, []string{"name"}},
		{"blank_name", func(c *Campaign) { c.Name = " " }, []string{"name"}},
		{"no_stock", func(c *Campaign) { c.Stock = 0 }, []string{"stock"}},
		{"no_window", func(c *Campaign) { c.StartsAt, c.EndsAt = time.Time{}, time.Time{} }, []string{"starts_at", "ends_at"}},
		{"ends_before_start", func(c *Campaign) { c.EndsAt = c.StartsAt.Add(-time.Hour) }, []string{"ends_at", "ends_at"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			ps, isValid := valid.Problems(c.Validate(now))
			var fields []string
			for _, p := range ps {
				fields = append(fields, p.Field)
			}
			if !isValid || !slices.Equal(fields, tt.want) {
				t.Fatalf("fields %v, want %v", fields, tt.want)
			}
		})
	}
}
