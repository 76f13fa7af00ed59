// Command bare is the baseline of the coupon benchmark: a gin server with
// the same route, body and answer as POST /v1/campaigns/{id}/requests, doing
// nothing but counting. `make bench-coupon` runs loadtest/coupon.js against
// it and against sagaflow in the same run, so the ratio says what sagaflow's
// request path (auth, Lua script in Redis, AOF fsync) costs on this machine.
package main

import (
	"flag"
	"log"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "listen address")
	flag.Parse()
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	var rank atomic.Int64
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ready"}) })
	r.POST("/v1/campaigns", func(c *gin.Context) {
		c.JSON(http.StatusCreated, gin.H{"id": "bare", "status": "open"})
	})
	r.POST("/v1/campaigns/:id/requests", func(c *gin.Context) {
		if !strings.HasPrefix(c.GetHeader("Authorization"), "Bearer ") {
			c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": gin.H{"code": "unauthenticated", "message": "no key"}})
			return
		}
		var body struct {
			UserID string `json:"user_id"`
		}
		if err := c.ShouldBindJSON(&body); err != nil || body.UserID == "" {
			c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": gin.H{"code": "bad_request", "message": "user_id"}})
			return
		}
		c.JSON(http.StatusAccepted, gin.H{"status": "accepted", "rank": rank.Add(1)})
	})
	srv := &http.Server{Addr: *addr, Handler: r, ReadHeaderTimeout: 5 * time.Second}
	log.Printf("bare baseline on http://%s", *addr)
	log.Fatal(srv.ListenAndServe())
}
