package screening

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/blocklist/redistest"
	"github.com/cleanline/cleanline/blocklist/storetest"
)

// fill puts n random valid UK mobile numbers (+4474 and 8 digits) in st, half
// confirmed, half reported, and returns them.
func fill(b *testing.B, st blocklist.Admin, n int) []string {
	rng := rand.New(rand.NewPCG(1, 2))
	nums := make([]string, 0, n)
	batch := make([]blocklist.Entry, 0, 10_000)
	now := time.Now()
	for i := 0; i < n; i++ {
		num := fmt.Sprintf("+4474%08d", rng.IntN(100_000_000))
		nums = append(nums, num)
		status := blocklist.StatusConfirmed
		if i%2 == 1 {
			status = blocklist.StatusReported
		}
		batch = append(batch, blocklist.Entry{Number: num, Status: status, Reports: 1, Source: "bench", FirstSeen: now, LastSeen: now})
		if len(batch) == cap(batch) || i == n-1 {
			if _, _, err := st.Put(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	return nums
}

// BenchmarkScreen measures one whole decision, caller ID text in, verdict
// out, on each store holding benchNumbers numbers. Callers alternate between
// blocked numbers and numbers in the 020 7946 range that are not blocked.
// "cached" is a repeat caller (the normaliser's cache hits); "uncached" pays
// libphonenumber's parse and validation on every call.
func BenchmarkScreen(b *testing.B) {
	n := storetest.BenchSize(b)
	ctx := context.Background()
	stores := map[string]func(b *testing.B) blocklist.Admin{
		"embedded": func(b *testing.B) blocklist.Admin {
			st, err := blocklist.OpenFile(filepath.Join(b.TempDir(), "bench.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			return st
		},
		"redis": func(b *testing.B) blocklist.Admin {
			srv := redistest.Start(b)
			opts, err := blocklist.ParseRedisURL("redis://" + srv.Addr)
			if err != nil {
				b.Fatal(err)
			}
			st, err := blocklist.NewRedis(opts)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			return st
		},
	}
	for _, name := range []string{"embedded", "redis"} {
		st := stores[name](b)
		blocked := fill(b, st, n)
		callers := make([]string, 0, 2048)
		for i := 0; i < 1024; i++ {
			callers = append(callers, blocked[i*(len(blocked)/1024+1)%len(blocked)], fmt.Sprintf("020 7946 %04d", i))
		}
		for _, cache := range []struct {
			name string
			size int
		}{{"cached", 0}, {"uncached", -1}} {
			sc, err := New(st, Config{CacheSize: cache.size})
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("%s/%dnumbers/%s", name, n, cache.name), func(b *testing.B) {
				b.ReportAllocs()
				lines := []string{"home", "care-home", "flat-2"}
				i, late := 0, 0
				for b.Loop() {
					v := sc.Screen(ctx, Call{Line: lines[i%3], From: callers[i%len(callers)]})
					if v.Has(ReasonStoreUnavailable) {
						late++ // past the 50 ms deadline: a loaded box, worth seeing
					}
					i++
				}
				b.ReportMetric(float64(late)/float64(i), "unavailable/op")
			})
		}
	}
}
