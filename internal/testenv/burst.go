package testenv

import (
	"sync"
	"sync/atomic"
)

// Burst calls send(i) for every i in 0..requests-1, parallel calls at once,
// each i once, in about the order of i, and returns when all have returned.
func Burst(requests, parallel int, send func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= requests {
					return
				}
				send(i)
			}
		})
	}
	wg.Wait()
}
