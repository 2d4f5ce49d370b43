package blocklist_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/blocklist/redistest"
	"github.com/cleanline/cleanline/blocklist/storetest"
)

func newRedis(t testing.TB, opts blocklist.RedisOptions) *blocklist.RedisStore {
	t.Helper()
	st, err := blocklist.NewRedis(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := st.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestRedisSuite(t *testing.T) {
	srv := redistest.Start(t)
	storetest.Run(t, func(t *testing.T) blocklist.Admin {
		srv.FlushAll(t)
		return newRedis(t, blocklist.RedisOptions{Addrs: []string{srv.Addr}})
	})
}

// TestRedisClusterSuite runs the suite through the Cluster client against a
// real one-node cluster, where a multi-key command across hash slots fails
// with CROSSSLOT: the key layout is checked, not just the logic.
func TestRedisClusterSuite(t *testing.T) {
	srv := redistest.StartCluster(t)
	storetest.Run(t, func(t *testing.T) blocklist.Admin {
		srv.FlushAll(t)
		return newRedis(t, blocklist.RedisOptions{Addrs: []string{srv.Addr}, Cluster: true})
	})
}

// TestRedisSentinelSuite runs the suite through the Sentinel client, as
// configured from a redis-sentinel:// URL, against a real Sentinel that
// names a real master: the client must ask the Sentinel and then use the
// master it was told about.
func TestRedisSentinelSuite(t *testing.T) {
	srv := redistest.StartSentinel(t)
	opts, err := blocklist.ParseRedisURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, func(t *testing.T) blocklist.Admin {
		srv.Master.FlushAll(t)
		return newRedis(t, opts)
	})
}

// TestRedisSentinelDown: with the master gone, and then the Sentinel too,
// Lookup still fails fast with ErrUnavailable naming the Sentinel, since the
// failover client asks the Sentinel again on every dial.
func TestRedisSentinelDown(t *testing.T) {
	srv := redistest.StartSentinel(t)
	opts, err := blocklist.ParseRedisURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	st := newRedis(t, opts)
	q := blocklist.Query{Caller: "+442079460123", Line: "home", VelocityWindow: time.Minute}
	if _, err := st.Lookup(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	for _, down := range []*redistest.Server{srv.Master, srv.Sentinel} {
		down.Stop()
		for i := 0; i < 3; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			start := time.Now()
			_, err := st.Lookup(ctx, q)
			took := time.Since(start)
			cancel()
			if !errors.Is(err, blocklist.ErrUnavailable) || !strings.Contains(err.Error(), srv.Sentinel.Addr) {
				t.Fatalf("Lookup with %s down: %v; want ErrUnavailable naming %s", down.Addr, err, srv.Sentinel.Addr)
			}
			if took > 150*time.Millisecond {
				t.Fatalf("Lookup with %s down took %s for a 50ms deadline", down.Addr, took)
			}
		}
	}
}

// TestRedisListingIsIntset: the exact-number listing stays an intset, the
// encoding that makes it cost about 9 bytes a number (see the key layout).
func TestRedisListingIsIntset(t *testing.T) {
	srv := redistest.Start(t)
	st := newRedis(t, blocklist.RedisOptions{Addrs: []string{srv.Addr}})
	ctx := context.Background()
	var es []blocklist.Entry
	for _, n := range []string{"+442079460123", "+447700900123", "+123"} {
		es = append(es, blocklist.Entry{Number: n, Status: blocklist.StatusConfirmed})
	}
	if _, _, err := st.Put(ctx, es); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Report(ctx, "+15550100123", "s", "r", time.Now()); err != nil {
		t.Fatal(err)
	}
	enc, err := srv.Do(ctx, "OBJECT", "ENCODING", "cl:idx:b:0123")
	if err != nil || enc != "intset" {
		t.Fatalf("listing bucket encoding %q, %v; want intset", enc, err)
	}
	if n, err := srv.Do(ctx, "SCARD", "cl:idx:b:0123"); err != nil || n != "4" {
		t.Fatalf("listing bucket holds %s, %v; want 4", n, err)
	}
}

// TestRedisDown: with the server gone, Lookup fails with ErrUnavailable,
// names the address, and takes about the caller's deadline, not Redis' own
// timeouts.
func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	st := newRedis(t, blocklist.RedisOptions{Addrs: []string{srv.Addr}})
	q := blocklist.Query{Caller: "+442079460123", Line: "home", VelocityWindow: time.Minute}
	if _, err := st.Lookup(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	for i := 0; i < 3; i++ { // the pool holds dead connections first, then none
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		start := time.Now()
		_, err := st.Lookup(ctx, q)
		took := time.Since(start)
		cancel()
		if !errors.Is(err, blocklist.ErrUnavailable) || !strings.Contains(err.Error(), srv.Addr) {
			t.Fatalf("Lookup with Redis down: %v; want ErrUnavailable naming %s", err, srv.Addr)
		}
		if took > 150*time.Millisecond {
			t.Fatalf("Lookup with Redis down took %s for a 50ms deadline", took)
		}
	}
	if _, err := st.Report(context.Background(), "+442079460123", "s", "r", time.Now()); !errors.Is(err, blocklist.ErrUnavailable) {
		t.Fatalf("Report with Redis down: %v", err)
	}
}

// TestRedisScriptFlush: after SCRIPT FLUSH (a restart or failover) Put and
// Report fall back to EVAL and still answer; Lookup uses no script.
func TestRedisScriptFlush(t *testing.T) {
	srv := redistest.Start(t)
	st := newRedis(t, blocklist.RedisOptions{Addrs: []string{srv.Addr}})
	ctx := context.Background()
	if _, err := srv.Do(ctx, "SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	if a, _, err := st.Put(ctx, []blocklist.Entry{{Number: "+442079460123", Status: blocklist.StatusConfirmed}}); err != nil || a != 1 {
		t.Fatalf("Put after SCRIPT FLUSH: %d, %v", a, err)
	}
	if _, err := srv.Do(ctx, "SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	f, err := st.Lookup(ctx, blocklist.Query{Caller: "+442079460123", Line: "home"})
	if err != nil || f.Entry == nil {
		t.Fatalf("Lookup after SCRIPT FLUSH: %+v, %v", f, err)
	}
	if _, err := srv.Do(ctx, "SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	if e, err := st.Report(ctx, "+442079460123", "s", "r", time.Now()); err != nil || e.Reports != 1 {
		t.Fatalf("Report after SCRIPT FLUSH: %+v, %v", e, err)
	}
}

// TestRedisVelocityExpires: a Lookup's velocity set is bounded by the window
// in time, and a Lookup without a window writes nothing.
func TestRedisVelocityExpires(t *testing.T) {
	srv := redistest.Start(t)
	st := newRedis(t, blocklist.RedisOptions{Addrs: []string{srv.Addr}})
	ctx := context.Background()
	q := blocklist.Query{Caller: "+442079460123", Line: "home"}
	if _, err := st.Lookup(ctx, q); err != nil {
		t.Fatal(err)
	}
	if n, err := srv.Do(ctx, "DBSIZE"); err != nil || n != "0" {
		t.Fatalf("Lookup without a window left %s keys, %v", n, err)
	}
	q.VelocityWindow = time.Minute
	if f, err := st.Lookup(ctx, q); err != nil || f.DistinctLines != 1 {
		t.Fatalf("Lookup: %+v, %v", f, err)
	}
	ms, err := srv.Do(ctx, "PTTL", "cl:{+442079460123}:v")
	if n, _ := strconv.Atoi(ms); err != nil || n <= 0 || n > 60_000 {
		t.Fatalf("velocity set PTTL %s, %v; want (0, 60000]", ms, err)
	}
}

func TestParseRedisURL(t *testing.T) {
	good := []struct {
		url  string
		want blocklist.RedisOptions
	}{
		{"redis://127.0.0.1:6379", blocklist.RedisOptions{Addrs: []string{"127.0.0.1:6379"}}},
		{"redis://127.0.0.1:6379/", blocklist.RedisOptions{Addrs: []string{"127.0.0.1:6379"}}},
		{"redis://u:p%40ss@db.local:6380/3", blocklist.RedisOptions{Addrs: []string{"db.local:6380"}, Username: "u", Password: "p@ss", DB: 3}},
		{"redis://:secret@[::1]:6379", blocklist.RedisOptions{Addrs: []string{"[::1]:6379"}, Password: "secret"}},
		{"redis-sentinel://s1:26379,s2:26379/mymaster", blocklist.RedisOptions{Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "mymaster"}},
		{"redis-sentinel://s1:26379/mymaster/2", blocklist.RedisOptions{Addrs: []string{"s1:26379"}, MasterName: "mymaster", DB: 2}},
		{"redis-cluster://n1:7000,n2:7001", blocklist.RedisOptions{Addrs: []string{"n1:7000", "n2:7001"}, Cluster: true}},
		{"redis-cluster://n1:7000", blocklist.RedisOptions{Addrs: []string{"n1:7000"}, Cluster: true}},
	}
	for _, c := range good {
		got, err := blocklist.ParseRedisURL(c.url)
		if err != nil {
			t.Errorf("ParseRedisURL(%q): %v", c.url, err)
			continue
		}
		if strings.Join(got.Addrs, ",") != strings.Join(c.want.Addrs, ",") || got.MasterName != c.want.MasterName ||
			got.Cluster != c.want.Cluster || got.DB != c.want.DB || got.Username != c.want.Username || got.Password != c.want.Password {
			t.Errorf("ParseRedisURL(%q) = %+v, want %+v", c.url, got, c.want)
		}
	}
	bad := []struct{ url, says string }{
		{"", "missing scheme"},
		{"127.0.0.1:6379", "missing scheme"},
		{"http://127.0.0.1:6379", "unknown scheme"},
		{"redis://", "no host:port"},
		{"redis://127.0.0.1", "not host:port"},
		{"redis://127.0.0.1:0", "port"},
		{"redis://127.0.0.1:99999", "port"},
		{"redis://:6379", "no host"},
		{"redis://127.0.0.1:6379/x", "database"},
		{"redis://127.0.0.1:6379/-1", "database"},
		{"redis://127.0.0.1:6379/1/2", "path must be /db"},
		{"redis://a:1,b:2", "several hosts"},
		{"redis://127.0.0.1:6379?db=1", "query"},
		{"redis-sentinel://s1:26379", "missing master name"},
		{"redis-sentinel://s1:26379/", "missing master name"},
		{"redis-sentinel://s1:26379/m/1/2", "path must be"},
		{"redis-sentinel://s1:26379/m/x", "database"},
		{"redis-cluster://n1:7000/1", "only database 0"},
		{"redis-cluster://n1:7000,n2", "not host:port"},
		{"redis://u:hunter2@h:1/x", "database"},
	}
	for _, c := range bad {
		_, err := blocklist.ParseRedisURL(c.url)
		if !errors.Is(err, blocklist.ErrInvalid) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("ParseRedisURL(%q) = %v; want ErrInvalid saying %q", c.url, err, c.says)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
}

func TestNewRedisOptions(t *testing.T) {
	for _, o := range []blocklist.RedisOptions{
		{},
		{Addrs: []string{"nohost"}},
		{Addrs: []string{"a:1"}, Cluster: true, DB: 1},
		{Addrs: []string{"a:1"}, Cluster: true, MasterName: "m"},
	} {
		if _, err := blocklist.NewRedis(o); !errors.Is(err, blocklist.ErrInvalid) {
			t.Errorf("NewRedis(%+v) = %v, want ErrInvalid", o, err)
		}
	}
}
