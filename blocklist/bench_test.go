package blocklist_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/blocklist/redistest"
	"github.com/cleanline/cleanline/blocklist/storetest"
)

// benchNumbers makes n distinct "+4474" + 8 digit numbers (valid UK mobiles).
func benchNumbers(n int) []string {
	r := rand.New(rand.NewPCG(1, 2))
	seen := make(map[uint32]bool, n)
	out := make([]string, 0, n)
	for len(out) < n {
		d := r.Uint32N(100_000_000)
		if seen[d] {
			continue
		}
		seen[d] = true
		out = append(out, fmt.Sprintf("+4474%08d", d))
	}
	return out
}

func benchEntries(nums []string) []blocklist.Entry {
	now := time.Now()
	es := make([]blocklist.Entry, 0, len(nums)+100)
	for i, n := range nums {
		st := blocklist.StatusConfirmed
		if i%3 == 0 {
			st = blocklist.StatusReported
		}
		es = append(es, blocklist.Entry{Number: n, Status: st, Reason: "bench", Source: "import:bench", FirstSeen: now, LastSeen: now})
	}
	for i := 0; i < 100; i++ { // some ranges, so range matching does real work
		es = append(es, blocklist.Entry{Number: fmt.Sprintf("+44207946%02d", i), Range: true, Status: blocklist.StatusConfirmed})
	}
	return es
}

// queries mixes hits on the loaded numbers with misses and range hits.
func benchQueries(nums []string) []blocklist.Query {
	r := rand.New(rand.NewPCG(3, 4))
	qs := make([]blocklist.Query, 4096)
	for i := range qs {
		var c string
		switch i % 4 {
		case 0, 1:
			c = nums[r.IntN(len(nums))]
		case 2:
			c = fmt.Sprintf("+4475%08d", r.IntN(100_000_000)) // miss
		case 3:
			c = fmt.Sprintf("+44207946%04d", r.IntN(10_000)) // range hit
		}
		qs[i] = blocklist.Query{Caller: c, Line: "home"}
	}
	return qs
}

func benchLookup(b *testing.B, st blocklist.Store, qs []blocklist.Query, window time.Duration) {
	ctx := context.Background()
	now := time.Now()
	i := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		q := qs[i%len(qs)]
		q.Now, q.VelocityWindow = now, window
		if _, err := st.Lookup(ctx, q); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkFileLookup1M(b *testing.B) {
	n := storetest.BenchSize(b)
	nums := benchNumbers(n)
	path := filepath.Join(b.TempDir(), "bench.db")
	st, err := blocklist.OpenFile(path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	start := time.Now()
	if _, _, err := st.Put(context.Background(), benchEntries(nums)); err != nil { // one transaction
		b.Fatal(err)
	}
	build := time.Since(start)
	fi, _ := os.Stat(path)
	qs := benchQueries(nums)
	b.Run("plain", func(b *testing.B) { benchLookup(b, st, qs, 0) })
	b.Run("velocity", func(b *testing.B) { benchLookup(b, st, qs, 5*time.Minute) })
	b.Run("parallel", func(b *testing.B) { benchLookupParallel(b, st, qs) })
	b.Logf("%d numbers: built in %s (one Put), file %.1f MB, %s", n, build.Round(time.Millisecond),
		float64(fi.Size())/1e6, procMem())
}

// procMem reads this process's resident memory: RssFile is the store's
// mmap'd pages (plus the binary), RssAnon the Go heap.
func procMem() string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "rss unknown"
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "RssAnon:") || strings.HasPrefix(l, "RssFile:") {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	return strings.Join(out, ", ")
}

func newBenchRedis(b *testing.B, srv *redistest.Server) *blocklist.RedisStore {
	st, err := blocklist.NewRedis(blocklist.RedisOptions{Addrs: []string{srv.Addr}, ReadTimeout: time.Second, WriteTimeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if err := st.Ping(context.Background()); err != nil {
		b.Fatal(err)
	}
	return st
}

func BenchmarkRedisLookup1M(b *testing.B) {
	n := storetest.BenchSize(b)
	nums := benchNumbers(n)
	srv := redistest.Start(b)
	st := newBenchRedis(b, srv)
	start := time.Now()
	if _, _, err := st.Put(context.Background(), benchEntries(nums)); err != nil {
		b.Fatal(err)
	}
	build := time.Since(start)
	qs := benchQueries(nums)
	b.Run("plain", func(b *testing.B) { redisCPU(b, srv, func() { benchLookup(b, st, qs, 0) }) })
	b.Run("velocity", func(b *testing.B) { redisCPU(b, srv, func() { benchLookup(b, st, qs, 5*time.Minute) }) })
	b.Run("parallel", func(b *testing.B) {
		redisCPU(b, srv, func() { benchLookupParallel(b, st, qs) })
	})
	mem, _ := srv.Do(context.Background(), "MEMORY", "STATS")
	used := ""
	if f := strings.Split(mem, "\n"); len(f) > 1 {
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "total.allocated" {
				used = f[i+1]
			}
		}
	}
	b.Logf("%d numbers: built in %s (Put), redis total.allocated %s bytes", n, build.Round(time.Millisecond), used)
}

// redisCPU reports the CPU time (user+sys) that run cost per op in
// redis-server (from INFO cpu) and in this process: ns/op of a round trip
// is mostly waiting, and says little about either.
func redisCPU(b *testing.B, srv *redistest.Server, run func()) {
	before, self := serverCPU(b, srv), processCPU()
	run()
	if b.N > 0 {
		b.ReportMetric((processCPU()-self)*1e6/float64(b.N), "go-µs/op")
		b.ReportMetric((serverCPU(b, srv)-before)*1e6/float64(b.N), "redis-µs/op")
	}
}

func serverCPU(b *testing.B, srv *redistest.Server) float64 {
	info, err := srv.Do(context.Background(), "INFO", "cpu")
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for _, l := range strings.Split(info, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), ":")
		if k == "used_cpu_user" || k == "used_cpu_sys" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("INFO cpu %s: %v", l, err)
			}
			sum += f
		}
	}
	return sum
}

func importFile(n int) []byte {
	var buf bytes.Buffer
	buf.WriteString("number,reason,source\n")
	for _, num := range benchNumbers(n) {
		buf.WriteString(num)
		buf.WriteString(",bench,feed\n")
	}
	return buf.Bytes()
}

func benchImport(b *testing.B, open func(b *testing.B) blocklist.Admin, batch int) {
	n := storetest.BenchSize(b)
	data := importFile(n)
	opt := importOpts()
	opt.BatchSize = batch
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		st := open(b)
		b.StartTimer()
		res, err := blocklist.Import(context.Background(), bytes.NewReader(data), st, opt)
		if err != nil || res.Added != n {
			b.Fatalf("%+v, %v", res.Added, err)
		}
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N), "s/import")
}

func BenchmarkImport1M(b *testing.B) {
	for _, batch := range []int{5000, 100_000} {
		b.Run(fmt.Sprintf("file/batch=%d", batch), func(b *testing.B) {
			benchImport(b, func(b *testing.B) blocklist.Admin {
				st, err := blocklist.OpenFile(filepath.Join(b.TempDir(), fmt.Sprintf("imp-%d.db", time.Now().UnixNano())))
				if err != nil {
					b.Fatal(err)
				}
				return st
			}, batch)
		})
	}
}

// BenchmarkImportRedis1M imports into a real redis-server on loopback (issue
// 2: under 10 s for 1,000,000 numbers). batch=0 is Import's default.
func BenchmarkImportRedis1M(b *testing.B) {
	srv := redistest.Start(b)
	for _, batch := range []int{0} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			benchImport(b, func(b *testing.B) blocklist.Admin {
				srv.FlushAll(b)
				return newBenchRedis(b, srv)
			}, batch)
		})
	}
}

// BenchmarkFileGet is one read transaction and one record decode: the floor
// under a Lookup.
func BenchmarkFileGet(b *testing.B) {
	st, err := blocklist.OpenFile(filepath.Join(b.TempDir(), "c.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	e := blocklist.Entry{Number: "+442079460123", Status: blocklist.StatusConfirmed, Reason: "bank impersonation", Source: "import:feed.csv", Reports: 3, FirstSeen: time.Now(), LastSeen: time.Now()}
	if _, _, err := st.Put(context.Background(), []blocklist.Entry{e}); err != nil {
		b.Fatal(err)
	}
	b.Run("get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := st.Get(context.Background(), e.Number, false); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchLookupParallel runs lookups from GOMAXPROCS goroutines.
func benchLookupParallel(b *testing.B, st blocklist.Store, qs []blocklist.Query) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx, i := context.Background(), rand.IntN(len(qs))
		for pb.Next() {
			if _, err := st.Lookup(ctx, qs[i%len(qs)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
