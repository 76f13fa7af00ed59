package api

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// healthz says the process is up; it checks nothing else.
func (s *Server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

type readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
	Down   []string          `json:"down,omitempty"`
}

// readyz checks every dependency in parallel, each within 2 seconds, and
// answers 503 naming those that did not answer. Each check is only "ok" or
// "down" in the answer: /readyz is unauthenticated, and a driver's error
// names hosts, users and databases. The errors go to the log.
func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	res := readiness{Status: "ready", Checks: map[string]string{}}
	failures := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, check := range s.deps.Checks {
		wg.Go(func() {
			err := check(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Checks[name] = "down"
				res.Down = append(res.Down, name)
				failures[name] = err.Error()
				return
			}
			res.Checks[name] = "ok"
		})
	}
	wg.Wait()
	if len(res.Down) > 0 {
		slices.Sort(res.Down)
		res.Status = "unavailable"
		attrs := []any{"down", res.Down}
		for _, name := range res.Down {
			attrs = append(attrs, "error_"+name, failures[name])
		}
		loggerFrom(c).Warn("not ready", attrs...)
		c.JSON(http.StatusServiceUnavailable, res)
		return
	}
	c.JSON(http.StatusOK, res)
}
