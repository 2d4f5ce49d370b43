package limit

import (
	"net/netip"
	"sync"
	"time"
)

// Rates are per-source token buckets with an expiring ban list, as
// Kamailio's pike module keeps: a source that sends faster than Rate for
// longer than Burst allows is banned for BanFor, and everything it sends
// while banned is dropped before anyone reads it. A source Exempt says yes
// to is never counted nor banned.
//
// A ban ends BanFor after it began, however much the source sends
// meanwhile (nothing it sends is even counted); the source then starts
// with a full bucket, so a flood that never stops gets Burst requests
// through per BanFor, and is banned again.
//
// Sources are keyed by IP; IPv6 by /64, the least a site is given, so
// that one host cannot walk its own prefix to dodge its ban.
type Rates struct {
	rate, burst float64
	banFor      time.Duration
	exempt      func(netip.Addr) bool
	now         func() time.Time
	onBan       func(src netip.Addr, until time.Time)
	max         int

	mu        sync.Mutex
	sources   map[netip.Addr]*bucket
	bans      int // sources banned now (bucket.until in the future)
	banned    int64
	dropped   int64
	lastSweep time.Time
}

// bucket is one source's tokens, and the end of its ban (zero: none).
type bucket struct {
	tokens float64
	at     time.Time // when tokens was last brought up to date
	until  time.Time
}

// RatesConfig configures Rates.
type RatesConfig struct {
	// Rate is the requests per second a source may keep up; Burst how many
	// it may send at once above that. Rate <= 0: nothing is limited.
	Rate  float64
	Burst int
	// BanFor is how long a source over its rate is banned.
	BanFor time.Duration
	// Exempt, when set, names sources never counted nor banned.
	Exempt func(netip.Addr) bool
	// OnBan, when set, is called once per ban, with the source (its key:
	// an IPv6 source's /64 as its first address) and when the ban ends.
	OnBan func(src netip.Addr, until time.Time)
	// MaxSources bounds the sources tracked at once: a flood from ever new
	// (forged) addresses must not grow the table without end. A source
	// beyond it is let through untracked. Default 1<<20.
	MaxSources int
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Verdicts of Rates.Take.
const (
	Pass   = iota // within the rate, or exempt
	Banned        // over the rate (banned by this request) or banned already: drop it
)

// NewRates builds the table.
func NewRates(cfg RatesConfig) *Rates {
	r := &Rates{rate: cfg.Rate, burst: float64(max(cfg.Burst, 1)), banFor: cfg.BanFor, exempt: cfg.Exempt,
		now: cfg.Now, onBan: cfg.OnBan, max: cfg.MaxSources, sources: map[netip.Addr]*bucket{}}
	if r.now == nil {
		r.now = time.Now
	}
	if r.max <= 0 {
		r.max = 1 << 20
	}
	return r
}

// key is what a source is counted as: its IP, or an IPv6 source's /64.
func key(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// Take counts one request from src and says whether it may be read (Pass)
// or is to be dropped unread (Banned).
func (r *Rates) Take(src netip.Addr) int { return r.TakeN(src, 1) }

// TakeN counts n requests from src at once (a stream read holding
// several), as Take.
func (r *Rates) TakeN(src netip.Addr, n int) int {
	if r.rate <= 0 || !src.IsValid() || (r.exempt != nil && r.exempt(src)) {
		return Pass
	}
	k := key(src)
	now := r.now()
	r.mu.Lock()
	if now.Sub(r.lastSweep) >= time.Second {
		r.sweep(now)
	}
	b := r.sources[k]
	if b == nil {
		if len(r.sources) >= r.max {
			r.mu.Unlock()
			return Pass
		}
		b = &bucket{tokens: r.burst, at: now}
		r.sources[k] = b
	}
	if !b.until.IsZero() {
		if now.Before(b.until) {
			r.dropped++
			r.mu.Unlock()
			return Banned
		}
		// The ban is over: a fresh start.
		b.until, b.tokens, b.at = time.Time{}, r.burst, now
		r.bans--
	}
	b.tokens = min(r.burst, b.tokens+now.Sub(b.at).Seconds()*r.rate)
	b.at = now
	if b.tokens >= float64(n) {
		b.tokens -= float64(n)
		r.mu.Unlock()
		return Pass
	}
	b.until = now.Add(r.banFor)
	r.bans++
	r.banned++
	r.dropped++
	until := b.until
	r.mu.Unlock()
	if r.onBan != nil {
		r.onBan(k, until)
	}
	return Banned
}

// sweep forgets sources whose bucket has refilled and whose ban is over:
// they are as if never seen. Called with mu held, at most once a second.
func (r *Rates) sweep(now time.Time) {
	r.lastSweep = now
	if r.rate <= 0 {
		return
	}
	full := time.Duration(r.burst / r.rate * float64(time.Second))
	for k, b := range r.sources {
		if !b.until.IsZero() {
			if now.Before(b.until) {
				continue
			}
			r.bans--
			delete(r.sources, k)
			continue
		}
		if now.Sub(b.at) >= full {
			delete(r.sources, k)
		}
	}
}

// BannedNow is the number of sources banned now (bans that ended but whose
// source has sent nothing since are counted until the next sweep, within a
// second).
func (r *Rates) BannedNow() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.lastSweep) >= time.Second {
		r.sweep(now)
	}
	return r.bans
}

// Bans is the number of bans imposed so far.
func (r *Rates) Bans() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.banned
}

// Dropped is the number of requests Take told to drop so far.
func (r *Rates) Dropped() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}

// IsBanned reports whether src is banned now.
func (r *Rates) IsBanned(src netip.Addr) bool {
	if !src.IsValid() {
		return false
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.sources[key(src)]
	return b != nil && now.Before(b.until)
}
