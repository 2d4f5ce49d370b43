package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cleanline/cleanline/blocklist/redistest"
	"github.com/cleanline/cleanline/cmd/internal/admin"
	"github.com/cleanline/cleanline/cmd/internal/admin/api"
)

// BenchmarkAdminAPI: `block add` and `check` through a running cleanline
// serve's HTTP API on loopback, as the CLI sends them (api.Client, keep-
// alive), on each store; p50 and p99 per request. A block add is durable
// when answered: fsynced on the embedded store. A CLI invocation adds its
// own start (config, health probe) to these.
func BenchmarkAdminAPI(b *testing.B) {
	srv := redistest.Start(b)
	for _, st := range []struct{ name, url string }{
		{"embedded", "file:" + filepath.Join(b.TempDir(), "cl.db")},
		{"redis", "redis://" + srv.Addr},
	} {
		b.Run(st.name, func(b *testing.B) {
			r := startServe(b, st.url, "", nil)
			c := api.NewClient("http://"+r.admin, "", nil)
			ctx := context.Background()
			b.Run("block_add", func(b *testing.B) {
				lat := make([]time.Duration, 0, 1024)
				i := 0
				for b.Loop() {
					n := fmt.Sprintf("+44207%07d", i%10_000_000)
					i++
					t0 := time.Now()
					if _, err := c.BlockAdd(ctx, admin.BlockAdd{Number: n, Reason: "bench"}); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
				percentiles(b, lat)
			})
			b.Run("check", func(b *testing.B) {
				if _, err := c.BlockAdd(ctx, admin.BlockAdd{Number: "+442070000001"}); err != nil {
					b.Fatal(err)
				}
				lat := make([]time.Duration, 0, 1024)
				for b.Loop() {
					t0 := time.Now()
					v, err := c.Check(ctx, admin.CheckIn{Number: "+442070000001", Line: "home"})
					if err != nil || v.Action != "block" || v.Entry == nil {
						b.Fatalf("check: %+v %v", v, err)
					}
					lat = append(lat, time.Since(t0))
				}
				percentiles(b, lat)
			})
			r.stop(b)
		})
	}
}

// percentiles reports the median and the 99th percentile of lat.
func percentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}
