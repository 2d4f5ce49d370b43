package blocklist

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Key layout (P is RedisOptions.Prefix, default "cl"). Everything one Lookup
// touches for a caller N shares the hash tag {N}, so it is on one Cluster
// node:
//
//	P:{N}:e          string  exact entry, redisCodec
//	P:{N}:p          string  "1" when N is protected
//	P:{N}:t          set     lines that trust N
//	P:{N}:b          set     lines that block N for themselves alone
//	P:{N}:c:<line>   string  cooldown deadline (Unix ms), PX ttl
//	P:{N}:v          zset    lines N reached, scored by Unix ms
//	P:{ranges}       hash    prefix -> redisCodec
//	P:{ranges}:i     zset    prefixes (listing)
//	P:idx:b:DDDD     set     exact numbers ending in DDDD, digits only (listing)
//	P:idx:protected  zset    protected numbers (listing)
//	P:line:{L}:t     zset    numbers line L trusts (listing)
//	P:line:{L}:b     zset    numbers line L blocks (listing)
//
// The small listing sets are zsets with score 0 so that ZRANGE BYLEX pages
// through them without the duplicates SCAN may return. The exact-number
// listing can hold millions, where a zset costs Redis about 5us and 110
// bytes per number; it is split instead into idxBuckets plain sets by the
// number's last four digits (zero-padded), members without the '+'. Walk
// reads one bucket whole (SMEMBERS: no duplicates), and a bucket of up to
// 512 members (set-max-intset-entries) is an intset: about 1us and 9 bytes
// per number up to 5M numbers, and still a cheap hash set beyond. In a
// Cluster every listing key is a single key on one node.

// RedisOptions configures NewRedis. The topology follows from it: MasterName
// set means Sentinel, Cluster or several Addrs means Cluster, else one server.
type RedisOptions struct {
	Addrs      []string // host:port; Sentinel addresses when MasterName is set
	MasterName string   // Sentinel master name
	Cluster    bool     // force Cluster even with one seed address
	Username   string
	Password   string
	// SentinelUsername/SentinelPassword authenticate to the Sentinels
	// themselves, when they differ from the master's credentials.
	SentinelUsername string
	SentinelPassword string
	DB               int         // standalone and Sentinel only
	TLS              *tls.Config // nil: plain TCP
	Prefix           string      // key prefix, default "cl"
	ClientName       string      // CLIENT SETNAME, default "cleanline"

	// Latency settings; zero means the default in brackets. The call path
	// must not queue behind a sick server: Lookup is bounded by
	// LookupTimeout and its ctx (ContextTimeoutEnabled), so the socket
	// timeouts are sized for bulk writes (a 5,000-command import pipeline
	// on a loaded box), not for the call path. The pool is large because a
	// connection stays held until its goroutine runs again, which on a
	// saturated box takes tens of milliseconds: 32 connections ran out at
	// 800 calls/s (issue 5) and every pool wait became a deferred call.
	DialTimeout   time.Duration // 500ms
	ReadTimeout   time.Duration // 3s
	WriteTimeout  time.Duration // 3s
	PoolTimeout   time.Duration // 1s; the call path's ctx is shorter
	LookupTimeout time.Duration // 150ms, applied when ctx has no earlier deadline
	PoolSize      int           // 256
	MinIdleConns  int           // 32: warm connections, no dial on the call path until a burst
	MaxRetries    int           // none (-1); see NewRedis

	// Clock replaces time.Now for Query.Now defaults and cooldown deadlines.
	Clock func() time.Time
}

// RedisStore is the shared store on Redis (standalone, Sentinel or Cluster).
type RedisStore struct {
	rdb           redis.UniversalClient
	p             string
	ranges        string // rangesKey, built once for Lookup
	lookupTimeout time.Duration
	clock         func() time.Time
	cluster       bool // multi-key scripts would be CROSSSLOT
	gate               // where: "redis 127.0.0.1:6379", for errors
}

// NewRedis builds the client; it does not dial. Call Ping at startup to
// check the server and load the scripts.
func NewRedis(opts RedisOptions) (*RedisStore, error) {
	if len(opts.Addrs) == 0 {
		return nil, fmt.Errorf("%w: redis: no address", ErrInvalid)
	}
	for _, a := range opts.Addrs {
		if err := checkHostPort(a); err != nil {
			return nil, err
		}
	}
	if (opts.Cluster || len(opts.Addrs) > 1 && opts.MasterName == "") && opts.DB != 0 {
		return nil, fmt.Errorf("%w: redis cluster has only database 0, not %d", ErrInvalid, opts.DB)
	}
	if opts.Cluster && opts.MasterName != "" {
		return nil, fmt.Errorf("%w: redis: choose Sentinel (master %q) or Cluster, not both", ErrInvalid, opts.MasterName)
	}
	def := func(d, v time.Duration) time.Duration {
		if d == 0 {
			return v
		}
		return d
	}
	defInt := func(d, v int) int {
		if d == 0 {
			return v
		}
		return d
	}
	s := &RedisStore{
		p:             opts.Prefix,
		lookupTimeout: def(opts.LookupTimeout, 150*time.Millisecond),
		clock:         opts.Clock,
	}
	if s.p == "" {
		s.p = "cl"
	}
	s.ranges = s.p + ":{ranges}"
	if s.clock == nil {
		s.clock = time.Now
	}
	if opts.ClientName == "" {
		opts.ClientName = "cleanline"
	}
	u := &redis.UniversalOptions{
		Addrs:            opts.Addrs,
		MasterName:       opts.MasterName,
		IsClusterMode:    opts.Cluster,
		Username:         opts.Username,
		Password:         opts.Password,
		SentinelUsername: opts.SentinelUsername,
		SentinelPassword: opts.SentinelPassword,
		DB:               opts.DB,
		TLSConfig:        opts.TLS,
		ClientName:       opts.ClientName,
		DialTimeout:      def(opts.DialTimeout, 500*time.Millisecond),
		ReadTimeout:      def(opts.ReadTimeout, 3*time.Second),
		WriteTimeout:     def(opts.WriteTimeout, 3*time.Second),
		PoolTimeout:      def(opts.PoolTimeout, time.Second),
		PoolSize:         defInt(opts.PoolSize, 256),
		MinIdleConns:     defInt(opts.MinIdleConns, 32),
		// Lookup is a pipeline. go-redis 9.23 runs pipelines on a separate
		// 10-connection pool with 128 KiB buffers, spilling to this one when
		// busy; one pool, sized above, is what the call path was measured on.
		PipelinePoolSize: -1,
		// No retries by default: go-redis replays a whole pipeline after a
		// timeout, and a replayed SET NX batch counts every new number as
		// updated (seen on a Cluster under load). The call path has a 150 ms
		// budget that a retry would not fit in anyway.
		MaxRetries:         defInt(opts.MaxRetries, -1),
		MinRetryBackoff:    5 * time.Millisecond,
		MaxRetryBackoff:    20 * time.Millisecond,
		DialerRetries:      1,
		DialerRetryTimeout: 10 * time.Millisecond,
		// Without this go-redis ignores ctx deadlines on the socket and a
		// Lookup could outlive the call it screens.
		ContextTimeoutEnabled: true,
	}
	switch {
	case opts.MasterName != "":
		s.where = "redis-sentinel " + opts.MasterName + "@" + strings.Join(opts.Addrs, ",")
	case opts.Cluster || len(opts.Addrs) > 1:
		s.where = "redis-cluster " + strings.Join(opts.Addrs, ",")
	default:
		s.where = "redis " + opts.Addrs[0]
	}
	s.rdb = redis.NewUniversalClient(u)
	_, s.cluster = s.rdb.(*redis.ClusterClient)
	return s, nil
}

// Client exposes the underlying client for health checks and metrics.
func (s *RedisStore) Client() redis.UniversalClient { return s.rdb }

// Ping checks the server (every master in a Cluster) and loads the scripts,
// so the first write does not pay an extra round trip for NOSCRIPT.
func (s *RedisStore) Ping(ctx context.Context) error {
	if err := s.enter(); err != nil {
		return err
	}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return s.fail("ping", err)
	}
	for _, sc := range []*redis.Script{upsertScript, upsertRangeScript, reportScript, putManyScript} {
		if err := sc.Load(ctx, s.rdb).Err(); err != nil {
			return s.fail("script load", err)
		}
	}
	return nil
}

func (s *RedisStore) fail(op string, err error) error {
	if errors.Is(err, redis.ErrClosed) || s.closed.Load() {
		return fmt.Errorf("%w: %s", ErrClosed, s.where)
	}
	if errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%s %s: %w", op, s.where, err)
	}
	return fmt.Errorf("%w: %s %s: %w", ErrUnavailable, op, s.where, err)
}

func (s *RedisStore) tag(n string) string        { return s.p + ":{" + n + "}" }
func (s *RedisStore) entryKey(n string) string   { return s.tag(n) + ":e" }
func (s *RedisStore) protKey(n string) string    { return s.tag(n) + ":p" }
func (s *RedisStore) trustKey(n string) string   { return s.tag(n) + ":t" }
func (s *RedisStore) rangesKey() string          { return s.ranges }
func (s *RedisStore) rangesIdx() string          { return s.p + ":{ranges}:i" }
func (s *RedisStore) protectedIdx() string       { return s.p + ":idx:protected" }
func (s *RedisStore) lineIdx(line string) string { return s.p + ":line:{" + line + "}:t" }
func (s *RedisStore) lineBlockKey(n string) string {
	return s.tag(n) + ":b"
}
func (s *RedisStore) lineBlockedIdx(line string) string { return s.p + ":line:{" + line + "}:b" }
func (s *RedisStore) coolKey(caller, line string) string {
	return s.tag(caller) + ":c:" + line
}

// idxBuckets is how many sets the exact-number listing is split over.
const idxBuckets = 10_000

// bucket is the listing bucket of exact number n: its last four digits.
func bucket(n string) int {
	b := 0
	for i := max(1, len(n)-4); i < len(n); i++ {
		b = b*10 + int(n[i]-'0')
	}
	return b
}

func (s *RedisStore) blockedIdx(n string) string { return s.bucketKey(bucket(n)) }

func (s *RedisStore) bucketKey(b int) string { return fmt.Sprintf("%s:idx:b:%04d", s.p, b) }

// idxMember is n as listed: its digits, a canonical integer (E.164 has no
// leading zero), which is what lets Redis keep a small bucket as an intset.
func idxMember(n string) string { return n[1:] }

// Close releases the client's connections. It is safe to call more than once.
func (s *RedisStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if err := s.rdb.Close(); err != nil {
		return fmt.Errorf("blocklist: close %s: %w", s.where, err)
	}
	return nil
}

// Redis record of an entry, kept textual so the Lua scripts can update the
// counters in place:
//
//	firstMs|reports|status|lastMs|len(reason)|reason source
//
// status is 'r' or 'c'. The two leading fields are what Put preserves.
func encodeRedisParts(e *Entry) (head, rest string) {
	head = strconv.FormatInt(toMilli(e.FirstSeen), 10) + "|" + strconv.Itoa(e.Reports) + "|"
	rest = string(statusByte(e.Status)) + "|" + strconv.FormatInt(toMilli(e.LastSeen), 10) + "|" +
		strconv.Itoa(len(e.Reason)) + "|" + e.Reason + e.Source
	return head, rest
}

func decodeRedisEntry(number string, isRange bool, v string) (Entry, error) {
	e := Entry{Number: number, Range: isRange}
	var f [5]string
	for i := range f {
		j := strings.IndexByte(v, '|')
		if j < 0 {
			return e, corrupt(number, errCorrupt)
		}
		f[i], v = v[:j], v[j+1:]
	}
	first, err1 := strconv.ParseInt(f[0], 10, 64)
	reports, err2 := strconv.Atoi(f[1])
	last, err3 := strconv.ParseInt(f[3], 10, 64)
	rl, err4 := strconv.Atoi(f[4])
	st, ok := Status(""), len(f[2]) == 1
	if ok {
		st, ok = byteStatus(f[2][0])
	}
	if err := errors.Join(err1, err2, err3, err4); err != nil || !ok || rl < 0 || rl > len(v) {
		return e, corrupt(number, errCorrupt)
	}
	e.Status, e.Reports = st, reports
	e.FirstSeen, e.LastSeen = fromMilli(first), fromMilli(last)
	e.Reason, e.Source = v[:rl], v[rl:]
	return e, nil
}
