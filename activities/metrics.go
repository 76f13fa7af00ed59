package activities

// The metrics an activities type was given, or ones that count nothing, so that
// each call site is one line.

func (a *SyncActivities) syncMetrics() SyncMetrics {
	if a.SyncMetrics == nil {
		return noMetrics{}
	}
	return a.SyncMetrics
}

func (a *CouponActivities) couponMetrics() CouponMetrics {
	if a.CouponMetrics == nil {
		return noMetrics{}
	}
	return a.CouponMetrics
}

func (a *JoinActivities) joinMetrics() JoinMetrics {
	if a.JoinMetrics == nil {
		return noMetrics{}
	}
	return a.JoinMetrics
}

// noMetrics counts nothing.
type noMetrics struct{}

func (noMetrics) Pushed(string, string, int) {}
func (noMetrics) Parked(string, string, int) {}
func (noMetrics) Push(string, string)        {}
func (noMetrics) SetAside(string, int)       {}
func (noMetrics) Issued(string, int)         {}
func (noMetrics) Ended(string, string, bool) {}
func (noMetrics) UnknownOutcome(string)      {}
func (noMetrics) Settled(string, string)     {}
