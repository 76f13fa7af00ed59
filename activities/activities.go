// Package activities holds the side effects of sagaflow's workflows, one
// type per saga next to its file: ProbeActivities (probe.go),
// JoinActivities (join.go), CouponActivities (coupon.go) and SyncActivities
// (sync.go). Each activity is a method on its saga's type, whose fields are
// the clients that saga uses, built once per process; a workflow refers to
// the methods through a nil pointer of its saga's type, and Temporal knows
// each activity by its method's name. One input and one result struct per
// activity.
package activities

// Activities are one process's activity sets, one per saga and so one per
// task queue (see workers.New). A nil field is registered as its zero value,
// whose activities fail when called: set every saga the process runs.
type Activities struct {
	Probe  *ProbeActivities
	Join   *JoinActivities
	Coupon *CouponActivities
	Sync   *SyncActivities
}
