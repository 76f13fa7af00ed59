package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/sagaflow/sagaflow/activities"
)

// Each item's traceparent travels from the signal to the push that carries
// it; a newer version replaces the older one's, a version that came without
// one carries none.
func TestCatalogSync_carries_each_items_traceparent_to_its_push(t *testing.T) {
	const (
		tpA1 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		tpA2 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	)
	st := newSyncTest(t)
	var pushed []activities.PushInput
	st.env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.PushInput) (activities.PushResult, error) {
		locked(func() { pushed = append(pushed, in) })
		return syncAll(ctx, in)
	})
	st.signal(time.Second, activities.SKUVersion{SKU: "A", Version: 1, Traceparent: tpA1},
		activities.SKUVersion{SKU: "A", Version: 2, Traceparent: tpA2}, activities.SKUVersion{SKU: "B", Version: 1})
	st.run(2 * time.Minute)

	require.Len(t, pushed, 2) // one per channel
	for _, p := range pushed {
		got := map[string]activities.SKUVersion{}
		for _, it := range p.Items {
			got[it.SKU] = it
		}
		require.Equal(t, activities.SKUVersion{SKU: "A", Version: 2, Traceparent: tpA2}, got["A"], "channel %s", p.ChannelID)
		require.Equal(t, activities.SKUVersion{SKU: "B", Version: 1}, got["B"], "channel %s", p.ChannelID)
	}
}
