package limit

import (
	"net/netip"
	"testing"
	"time"
)

// clock is a hand-moved time for Rates.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestRatesBanOverRateThenForgive(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	var bans []netip.Addr
	r := NewRates(RatesConfig{Rate: 10, Burst: 5, BanFor: 30 * time.Second, Now: c.now,
		OnBan: func(src netip.Addr, until time.Time) {
			bans = append(bans, src)
			if want := c.t.Add(30 * time.Second); !until.Equal(want) {
				t.Errorf("ban until %v, want %v", until, want)
			}
		}})
	src := netip.MustParseAddr("192.0.2.7")
	for i := range 5 {
		if v := r.Take(src); v != Pass {
			t.Fatalf("request %d of the burst: %d, want Pass", i, v)
		}
	}
	if v := r.Take(src); v != Banned {
		t.Fatalf("request over the burst: %d, want Banned", v)
	}
	// Banned: everything is dropped, however slowly it comes, and the ban
	// is reported once.
	for range 20 {
		c.advance(time.Second)
		if v := r.Take(src); v != Banned {
			t.Fatalf("request %v into the ban: %d, want Banned", c.t.Sub(time.Unix(1000, 0)), v)
		}
	}
	if len(bans) != 1 || bans[0] != src || r.Bans() != 1 || r.BannedNow() != 1 || !r.IsBanned(src) {
		t.Fatalf("bans %v, Bans %d, BannedNow %d, IsBanned %v; want one ban of %s", bans, r.Bans(), r.BannedNow(), r.IsBanned(src), src)
	}
	if r.Dropped() != 21 {
		t.Fatalf("dropped %d, want 21", r.Dropped())
	}
	// Another source is not affected.
	if v := r.Take(netip.MustParseAddr("192.0.2.8")); v != Pass {
		t.Fatalf("other source: %d, want Pass", v)
	}
	c.advance(10 * time.Second) // 30 s since the ban
	if r.IsBanned(src) {
		t.Fatal("still banned after BanFor")
	}
	if v := r.Take(src); v != Pass {
		t.Fatalf("after the ban: %d, want Pass", v)
	}
	if r.BannedNow() != 0 {
		t.Fatalf("BannedNow %d after the ban ended", r.BannedNow())
	}
}

func TestRatesSteadyRateWithinLimitPasses(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	r := NewRates(RatesConfig{Rate: 10, Burst: 2, BanFor: time.Minute, Now: c.now})
	src := netip.MustParseAddr("192.0.2.7")
	for i := range 1000 { // 10/s for 100 s
		if v := r.Take(src); v != Pass {
			t.Fatalf("request %d at the rate: %d, want Pass", i, v)
		}
		c.advance(100 * time.Millisecond)
	}
	if r.Bans() != 0 {
		t.Fatalf("%d bans at the rate", r.Bans())
	}
}

func TestRatesExemptAndDisabled(t *testing.T) {
	peer := netip.MustParseAddr("192.0.2.2")
	r := NewRates(RatesConfig{Rate: 1, Burst: 1, BanFor: time.Minute, Exempt: func(a netip.Addr) bool { return a == peer }})
	for range 1000 {
		if r.Take(peer) != Pass || r.Take(netip.Addr{}) != Pass {
			t.Fatal("an exempt or invalid source was limited")
		}
	}
	off := NewRates(RatesConfig{Rate: 0})
	for range 1000 {
		if off.Take(netip.MustParseAddr("192.0.2.9")) != Pass {
			t.Fatal("Rate 0 limited a source")
		}
	}
	if r.Bans() != 0 || off.Bans() != 0 || off.BannedNow() != 0 {
		t.Fatal("bans without a limit")
	}
}

// An IPv6 host cannot dodge its ban by changing the low 64 bits; an
// IPv4-mapped address is its IPv4 address.
func TestRatesKeysIPv6By64(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	r := NewRates(RatesConfig{Rate: 1, Burst: 1, BanFor: time.Minute, Now: c.now})
	r.Take(netip.MustParseAddr("2001:db8:1:2::1"))
	if r.Take(netip.MustParseAddr("2001:db8:1:2:ffff::9")) != Banned {
		t.Fatal("another address of the same /64 was not counted with it")
	}
	if r.Take(netip.MustParseAddr("2001:db8:1:3::1")) != Pass {
		t.Fatal("another /64 was banned")
	}
	r.Take(netip.MustParseAddr("192.0.2.1"))
	if r.Take(netip.MustParseAddr("::ffff:192.0.2.1")) != Banned {
		t.Fatal("an IPv4-mapped address was not counted as its IPv4 address")
	}
}

// Sources are forgotten once their bucket is full again, and a flood from
// ever new addresses tracks at most MaxSources.
func TestRatesTableIsBounded(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	r := NewRates(RatesConfig{Rate: 10, Burst: 10, BanFor: time.Second, MaxSources: 100, Now: c.now})
	for i := range 1000 {
		r.Take(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	r.mu.Lock()
	n := len(r.sources)
	r.mu.Unlock()
	if n != 100 {
		t.Fatalf("%d sources tracked, want the bound 100", n)
	}
	c.advance(2 * time.Second)
	r.Take(netip.MustParseAddr("10.1.0.1"))
	r.mu.Lock()
	n = len(r.sources)
	r.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d sources tracked after they refilled, want 1", n)
	}
}

func BenchmarkRatesTake(b *testing.B) {
	r := NewRates(RatesConfig{Rate: 20, Burst: 40, BanFor: time.Minute})
	src := netip.MustParseAddr("192.0.2.7")
	for b.Loop() {
		r.Take(src)
	}
}

func TestRatesTakeNCountsEach(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	r := NewRates(RatesConfig{Rate: 1, Burst: 10, BanFor: time.Minute, Now: c.now})
	src := netip.MustParseAddr("192.0.2.7")
	if r.TakeN(src, 10) != Pass {
		t.Fatal("a burst's worth at once was refused")
	}
	if r.TakeN(src, 1) != Banned {
		t.Fatal("one more after a full burst at once was not banned")
	}
}
