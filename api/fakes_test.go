package api

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/coupon"
	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/queue"
	"github.com/sagaflow/sagaflow/internal/starter"
)

// stores are in-memory fakes of every store the handlers use. They count
// the calls that reach them (a bad input must reach none) and accept
// whatever they are given, as a store that trusts the edge would.
type stores struct {
	calls atomic.Int32

	mu       sync.Mutex
	traceIDs []string
	products []catalog.Product
	users    []string
}

func (s *stores) hit() { s.calls.Add(1) }

type fakeMeetings struct{ *stores }

func (f fakeMeetings) Create(_ context.Context, m meeting.Meeting) (meeting.Meeting, error) {
	f.hit()
	m.ID, m.Status = uuid.NewString(), meeting.StatusOpen
	return m, nil
}
func (f fakeMeetings) Get(context.Context, string) (meeting.Meeting, error) {
	f.hit()
	return meeting.Meeting{}, meeting.ErrNotFound
}
func (f fakeMeetings) Close(context.Context, string) (meeting.Meeting, error) {
	f.hit()
	return meeting.Meeting{}, meeting.ErrNotFound
}
func (f fakeMeetings) JoinStart(context.Context, string, string, string) (meeting.JoinStart, error) {
	f.hit()
	return meeting.JoinStart{}, meeting.ErrNotFound
}
func (f fakeMeetings) NewJoin(context.Context, string, string, string, meeting.JoinRequest, starter.Start) (meeting.Join, string, bool, error) {
	f.hit()
	return meeting.Join{}, "", false, errors.New("fake: no joins")
}
func (f fakeMeetings) Join(context.Context, string) (meeting.Join, error) {
	f.hit()
	return meeting.Join{}, meeting.ErrJoinNotFound
}

type fakeCampaigns struct{ *stores }

func (f fakeCampaigns) Create(_ context.Context, c coupon.Campaign, _ func(coupon.Campaign) (starter.Start, error)) (coupon.Campaign, error) {
	f.hit()
	c.ID = uuid.NewString()
	return c, nil
}
func (f fakeCampaigns) Get(context.Context, string) (coupon.Campaign, error) {
	f.hit()
	return coupon.Campaign{}, coupon.ErrNotFound
}
func (f fakeCampaigns) Coupon(context.Context, string, string) (coupon.Coupon, error) {
	f.hit()
	return coupon.Coupon{}, coupon.ErrNotFound
}

type fakeQueue struct{ *stores }

func (f fakeQueue) OpenCampaign(context.Context, queue.Campaign) error { f.hit(); return nil }
func (f fakeQueue) Ask(_ context.Context, _, _, user string) (queue.Answer, error) {
	f.hit()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.users = append(f.users, user)
	return queue.Answer{Outcome: queue.Accepted, Rank: int64(len(f.users))}, nil
}
func (f fakeQueue) State(context.Context, string, string) (queue.CampaignState, error) {
	f.hit()
	return queue.CampaignState{}, nil
}
func (f fakeQueue) Rank(context.Context, string, string, string) (int64, bool, error) {
	f.hit()
	return 0, false, nil
}

type fakeCatalog struct{ *stores }

func (f fakeCatalog) PutProduct(_ context.Context, _ string, p catalog.Product, traceID string) (catalog.Product, bool, error) {
	f.hit()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.traceIDs = append(f.traceIDs, traceID)
	p.Version = 1
	f.products = append(f.products, p)
	return p, true, nil
}
func (f fakeCatalog) Product(context.Context, string) (catalog.Product, error) {
	f.hit()
	return catalog.Product{}, catalog.ErrNotFound
}
func (f fakeCatalog) CreateChannel(_ context.Context, c catalog.Channel) (catalog.Channel, error) {
	f.hit()
	c.ID = uuid.NewString()
	return c, nil
}
func (f fakeCatalog) Channels(context.Context) ([]catalog.Channel, error) { f.hit(); return nil, nil }
func (f fakeCatalog) DeleteChannel(context.Context, string) error {
	f.hit()
	return catalog.ErrNotFound
}
func (f fakeCatalog) SyncedByChannel(context.Context, string) (map[string]int64, error) {
	f.hit()
	return nil, nil
}
func (f fakeCatalog) ParkedPage(context.Context, catalog.ParkedFilter, int, time.Time, string) ([]catalog.ParkedItem, error) {
	f.hit()
	return nil, nil
}
func (f fakeCatalog) ParkedBySKU(context.Context, string) ([]catalog.ParkedItem, error) {
	f.hit()
	return nil, nil
}
func (f fakeCatalog) ParkedItem(context.Context, string) (catalog.ParkedItem, error) {
	f.hit()
	return catalog.ParkedItem{}, catalog.ErrNotFound
}

// newEdgeHandler is the whole API over the fakes (no Temporal: no test of
// the edge may reach it). The key demo-key is tenant demo's.
func newEdgeHandler(t *testing.T) (http.Handler, *stores, *fakeTenants) {
	t.Helper()
	s := &stores{}
	f := demoTenants()
	h := testHandler(t, Deps{
		Tenants:      f,
		Meetings:     func(string) MeetingStore { return fakeMeetings{s} },
		Campaigns:    func(string) CampaignStore { return fakeCampaigns{s} },
		Queue:        fakeQueue{s},
		Catalog:      func(string) CatalogStore { return fakeCatalog{s} },
		Markets:      []MarketInfo{{Name: "shopwave", BaseURL: "http://127.0.0.1:1"}},
		MaxBodyBytes: 64 << 10,
		KeyCacheTTL:  time.Minute,
	})
	return h, s, f
}
