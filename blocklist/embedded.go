package blocklist

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterr "go.etcd.io/bbolt/errors"
)

// Layout of the embedded store: one bucket, keys tagged by their first byte.
// One bucket because opening a bucket is a B+tree search and allocations of
// its own, and Lookup is measured in hundreds of nanoseconds; one cursor then
// serves every read of a Lookup.
//
//	'e' number               -> record (codec.go)
//	'r' prefix               -> record; sorted, so ranges are found by seeking
//	'p' number               -> empty (protected)
//	't' line NUL number      -> empty (trusted)
var (
	bucketData = []byte("blocklist")
	bucketMeta = []byte("meta") // "schema" -> version
)

const (
	kindEntry     = 'e'
	kindRange     = 'r'
	kindProtected = 'p'
	kindTrusted   = 't'
)

func kindOf(isRange bool) byte {
	if isRange {
		return kindRange
	}
	return kindEntry
}

func key(kind byte, parts ...string) []byte {
	n := 1
	for _, p := range parts {
		n += len(p) + 1
	}
	k := make([]byte, 0, n)
	k = append(k, kind)
	for i, p := range parts {
		if i > 0 {
			k = append(k, 0)
		}
		k = append(k, p...)
	}
	return k
}

// get is Bucket.Get through a shared cursor, which keeps its search stack
// between calls instead of allocating a new one.
func get(c *bolt.Cursor, k []byte) []byte {
	ck, v := c.Seek(k)
	if ck == nil || !bytes.Equal(ck, k) {
		return nil
	}
	return v
}

const schemaVersion = "1"

// FileStore is the embedded store: one bbolt file owned by one process.
// Admin writes and Report are committed with fsync before they return;
// cooldowns and velocity counters are in memory only (see shortLived).
type FileStore struct {
	db     *bolt.DB
	path   string
	clock  func() time.Time
	mem    *shortLived
	closed atomic.Bool
}

var (
	_ Admin = (*FileStore)(nil)
	_ Admin = (*RedisStore)(nil)
)

// FileOption configures OpenFile.
type FileOption func(*fileConfig)

type fileConfig struct {
	lockTimeout time.Duration
	clock       func() time.Time
}

// WithLockTimeout bounds how long OpenFile waits for another process to
// release the file (default 1s).
func WithLockTimeout(d time.Duration) FileOption {
	return func(c *fileConfig) { c.lockTimeout = d }
}

// WithClock replaces time.Now for cooldown deadlines, default timestamps and
// Lookups whose Query.Now is zero.
func WithClock(now func() time.Time) FileOption {
	return func(c *fileConfig) { c.clock = now }
}

// OpenFile opens or creates the store at path. Only one process may hold
// the file; a second one gets an error wrapping ErrUnavailable after the
// lock timeout instead of hanging.
func OpenFile(path string, opts ...FileOption) (*FileStore, error) {
	cfg := fileConfig{lockTimeout: time.Second, clock: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.lockTimeout <= 0 {
		cfg.lockTimeout = time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: cfg.lockTimeout,
		// The freelist is rebuilt by scanning on open instead of written on
		// every commit: cheaper commits, and crash safety is unaffected.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, bolterr.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s is locked by another process (waited %s)", ErrUnavailable, path, cfg.lockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %w", ErrUnavailable, path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketData, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get([]byte("schema")); {
		case v == nil:
			return meta.Put([]byte("schema"), []byte(schemaVersion))
		case string(v) != schemaVersion:
			return fmt.Errorf("schema version %q, this build reads %q", v, schemaVersion)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: initialise %s: %w", ErrUnavailable, path, err)
	}
	return &FileStore{db: db, path: path, clock: cfg.clock, mem: newShortLived()}, nil
}

// PreferredBatch is the Import batch size for this store: a bbolt commit
// rewrites every page it touches, so 1M random numbers in batches of 5,000
// took about 26 s and in batches of 100,000 about 7 s (BenchmarkImport1M).
func (s *FileStore) PreferredBatch() int { return 100_000 }

// Path is the file the store lives in.
func (s *FileStore) Path() string { return s.path }

func (s *FileStore) fail(op string, err error) error {
	if errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrClosed) {
		return err
	}
	if errors.Is(err, bolterr.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %s", ErrClosed, s.path)
	}
	if errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%s %s: %w", op, s.path, err)
	}
	return fmt.Errorf("%w: %s %s: %w", ErrUnavailable, op, s.path, err)
}

func (s *FileStore) begin(ctx context.Context, op string) error {
	if s.closed.Load() {
		return fmt.Errorf("%w: %s", ErrClosed, s.path)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrUnavailable, op, s.path, err)
	}
	return nil
}

// Local reports true: the file is memory-mapped in this process.
func (s *FileStore) Local() bool { return true }

// Lookup answers from one read-only transaction and the in-memory marks.
func (s *FileStore) Lookup(ctx context.Context, q Query) (Facts, error) {
	var f Facts
	// No ctx check: a local read takes microseconds, and refusing it because
	// the caller's goroutine was descheduled past its deadline would only
	// turn a known answer into "unavailable" on a busy box.
	if s.closed.Load() {
		return f, fmt.Errorf("%w: %s", ErrClosed, s.path)
	}
	if err := checkNumber("caller", q.Caller); err != nil {
		return f, err
	}
	if err := checkQueryLine(q.Line); err != nil {
		return f, err
	}
	now := nowOr(q.Now, s.clock).UnixNano()
	var kbuf [2 + maxLineLen + 16]byte // no allocation for keys
	k := append(kbuf[:0], kindTrusted)
	k = append(append(append(k, q.Line...), 0), q.Caller...)
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketData).Cursor()
		f.Trusted = q.Line != "" && get(c, k) != nil
		k = append(append(k[:0], kindProtected), q.Caller...)
		f.Protected = get(c, k) != nil
		k[0] = kindEntry
		if v := get(c, k); v != nil {
			e := &Entry{Number: q.Caller}
			if err := decodeEntry(v, e); err != nil {
				return corrupt(q.Caller, err)
			}
			f.Entry = e
		}
		k[0] = kindRange
		if rk, v := longestPrefix(c, k); rk != nil {
			e := &Entry{Number: string(rk[1:]), Range: true}
			if err := decodeEntry(v, e); err != nil {
				return corrupt(e.Number, err)
			}
			f.Range = e
		}
		return nil
	})
	if err != nil {
		return Facts{}, s.fail("lookup", err)
	}
	f.Cooldown = s.mem.inCooldown(q.Line, q.Caller, now)
	if q.VelocityWindow > 0 {
		f.DistinctLines = s.mem.visit(q.Caller, q.Line, now, int64(q.VelocityWindow))
	}
	return f, nil
}

// longestPrefix finds the longest key that is a prefix of target. The
// largest key <= target is either that prefix, or shares a common prefix of
// length l with target, and then no matching key can be longer than l: so
// each step shortens target and it costs one or two seeks in practice,
// instead of one Get per prefix length.
//
// target and the keys carry the kind byte, so the shortest prefix tried is the
// kind byte, '+' and one digit.
func longestPrefix(c *bolt.Cursor, target []byte) (k, v []byte) {
	for len(target) > 2 {
		k, v = c.Seek(target)
		if k == nil || !bytes.Equal(k, target) {
			k, v = c.Prev()
		}
		if k == nil {
			return nil, nil
		}
		if bytes.HasPrefix(target, k) {
			return k, v
		}
		l := 0
		for l < len(k) && l < len(target) && k[l] == target[l] {
			l++
		}
		target = target[:l]
	}
	return nil, nil
}

func (s *FileStore) MarkCooldown(ctx context.Context, line, caller string, ttl time.Duration) error {
	if err := s.begin(ctx, "cooldown"); err != nil {
		return err
	}
	if err := checkLine(line); err != nil {
		return err
	}
	if err := checkNumber("caller", caller); err != nil {
		return err
	}
	if ttl <= 0 {
		return fmt.Errorf("%w: cooldown ttl %s must be positive", ErrInvalid, ttl)
	}
	now := s.clock()
	s.mem.markCooldown(line, caller, now.Add(ttl).UnixNano(), now.UnixNano())
	return nil
}

func (s *FileStore) Report(ctx context.Context, number, source, reason string, at time.Time) (Entry, error) {
	if err := s.begin(ctx, "report"); err != nil {
		return Entry{}, err
	}
	if err := checkNumber("number", number); err != nil {
		return Entry{}, err
	}
	if err := checkText("source", source); err != nil {
		return Entry{}, err
	}
	if err := checkText("reason", reason); err != nil {
		return Entry{}, err
	}
	at = fromMilli(toMilli(nowOr(at, s.clock)))
	var out Entry
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketData)
		k := key(kindEntry, number)
		out = Entry{Number: number}
		if v := b.Get(k); v != nil {
			if err := decodeEntry(v, &out); err != nil {
				return corrupt(number, err)
			}
			applyReport(&out, source, reason, at)
		} else {
			out = Entry{Number: number, Status: StatusReported, Reason: reason, Source: source,
				Reports: 1, FirstSeen: at, LastSeen: at}
		}
		return b.Put(k, appendEntry(nil, &out))
	})
	if err != nil {
		return Entry{}, s.fail("report", err)
	}
	return out, nil
}

// applyReport is the one definition of what a report does to an existing
// entry: count it, move LastSeen forward, fill Reason/Source only when empty
// (the first account of a number is kept), never change the status.
func applyReport(e *Entry, source, reason string, at time.Time) {
	e.Reports++
	if at.After(e.LastSeen) {
		e.LastSeen = at
	}
	if e.Reason == "" {
		e.Reason = reason
	}
	if e.Source == "" {
		e.Source = source
	}
}

// bulkPut is the batch size from which Put packs pages densely.
const bulkPut = 1000

func (s *FileStore) Put(ctx context.Context, entries []Entry) (added, updated int, err error) {
	if err := s.begin(ctx, "put"); err != nil {
		return 0, 0, err
	}
	if err := validateEntries(entries); err != nil {
		return 0, 0, err
	}
	if len(entries) == 0 {
		return 0, 0, nil
	}
	// Inserting in key order keeps bbolt's page splits local; ties broken by
	// position keep the batch's own order among duplicates of one key.
	order := make([]int, len(entries))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		ea, eb := &entries[a], &entries[b]
		if ea.Range != eb.Range {
			if ea.Range {
				return 1
			}
			return -1
		}
		if c := strings.Compare(ea.Number, eb.Number); c != 0 {
			return c
		}
		return a - b
	})
	now := s.clock()
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketData)
		if len(order) >= bulkPut {
			// A big sorted batch fills pages nearly full instead of splitting
			// them in half: about 40% smaller file for a bulk load.
			b.FillPercent = 0.9
		}
		var buf []byte
		for _, i := range order {
			e := prepare(entries[i], now)
			k := key(kindOf(e.Range), e.Number)
			if v := b.Get(k); v != nil {
				var old Entry
				if err := decodeEntry(v, &old); err != nil {
					return corrupt(e.Number, err)
				}
				e.FirstSeen, e.Reports = old.FirstSeen, old.Reports
				updated++
			} else {
				added++
			}
			buf = appendEntry(buf[:0], &e)
			// bbolt keeps the value slice until commit, so it needs its own copy.
			if err := b.Put(k, bytes.Clone(buf)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, s.fail("put", err)
	}
	return added, updated, nil
}

func (s *FileStore) Remove(ctx context.Context, number string, isRange bool) error {
	if err := s.begin(ctx, "remove"); err != nil {
		return err
	}
	if err := checkKey(number, isRange); err != nil {
		return err
	}
	return s.deleteKey("remove", key(kindOf(isRange), number), number)
}

func (s *FileStore) deleteKey(op string, k []byte, what string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketData)
		if b.Get(k) == nil {
			return fmt.Errorf("%w: %s", ErrNotFound, what)
		}
		return b.Delete(k)
	})
	if err != nil {
		return s.fail(op, err)
	}
	return nil
}

func (s *FileStore) Get(ctx context.Context, number string, isRange bool) (Entry, error) {
	if err := s.begin(ctx, "get"); err != nil {
		return Entry{}, err
	}
	if err := checkKey(number, isRange); err != nil {
		return Entry{}, err
	}
	e := Entry{Number: number, Range: isRange}
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketData).Get(key(kindOf(isRange), number))
		if v == nil {
			return fmt.Errorf("%w: %s", ErrNotFound, number)
		}
		if err := decodeEntry(v, &e); err != nil {
			return corrupt(number, err)
		}
		return nil
	})
	if err != nil {
		return Entry{}, s.fail("get", err)
	}
	return e, nil
}

// walkChunk bounds how long one read transaction stays open during Walk:
// fn runs outside any transaction, so it may write to the store, and a slow
// fn never holds back bbolt's remapping when the file grows.
const walkChunk = 1024

func (s *FileStore) Walk(ctx context.Context, fn func(Entry) error) error {
	if err := s.begin(ctx, "walk"); err != nil {
		return err
	}
	for _, isRange := range []bool{false, true} {
		prefix := []byte{kindOf(isRange)}
		after := prefix
		for {
			if err := s.begin(ctx, "walk"); err != nil {
				return err
			}
			chunk := make([]Entry, 0, walkChunk)
			err := s.db.View(func(tx *bolt.Tx) error {
				c := tx.Bucket(bucketData).Cursor()
				k, v := c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
				for ; k != nil && k[0] == prefix[0] && len(chunk) < walkChunk; k, v = c.Next() {
					e := Entry{Number: string(k[1:]), Range: isRange}
					if err := decodeEntry(v, &e); err != nil {
						return corrupt(e.Number, err)
					}
					chunk = append(chunk, e)
				}
				return nil
			})
			if err != nil {
				return s.fail("walk", err)
			}
			for _, e := range chunk {
				if err := fn(e); err != nil {
					return err
				}
			}
			if len(chunk) < walkChunk {
				break
			}
			after = key(prefix[0], chunk[len(chunk)-1].Number)
		}
	}
	return nil
}

func (s *FileStore) Protect(ctx context.Context, number string) error {
	if err := s.begin(ctx, "protect"); err != nil {
		return err
	}
	if err := checkNumber("number", number); err != nil {
		return err
	}
	return s.putKey("protect", key(kindProtected, number))
}

func (s *FileStore) putKey(op string, k []byte) error {
	err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketData).Put(k, []byte{}) })
	if err != nil {
		return s.fail(op, err)
	}
	return nil
}

func (s *FileStore) Unprotect(ctx context.Context, number string) error {
	if err := s.begin(ctx, "unprotect"); err != nil {
		return err
	}
	if err := checkNumber("number", number); err != nil {
		return err
	}
	return s.deleteKey("unprotect", key(kindProtected, number), "protected "+number)
}

func (s *FileStore) Protected(ctx context.Context) ([]string, error) {
	if err := s.begin(ctx, "protected"); err != nil {
		return nil, err
	}
	return s.keys("protected", key(kindProtected))
}

// keys lists the keys under prefix, without it; bbolt keeps them sorted.
func (s *FileStore) keys(op string, prefix []byte) ([]string, error) {
	out := []string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketData).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			out = append(out, string(k[len(prefix):]))
		}
		return nil
	})
	if err != nil {
		return nil, s.fail(op, err)
	}
	return out, nil
}

func (s *FileStore) Trust(ctx context.Context, line, number string) error {
	if err := s.begin(ctx, "trust"); err != nil {
		return err
	}
	if err := checkLine(line); err != nil {
		return err
	}
	if err := checkNumber("number", number); err != nil {
		return err
	}
	return s.putKey("trust", key(kindTrusted, line, number))
}

func (s *FileStore) Untrust(ctx context.Context, line, number string) error {
	if err := s.begin(ctx, "untrust"); err != nil {
		return err
	}
	if err := checkLine(line); err != nil {
		return err
	}
	if err := checkNumber("number", number); err != nil {
		return err
	}
	return s.deleteKey("untrust", key(kindTrusted, line, number), number+" trusted by "+line)
}

func (s *FileStore) Trusted(ctx context.Context, line string) ([]string, error) {
	if err := s.begin(ctx, "trusted"); err != nil {
		return nil, err
	}
	if err := checkLine(line); err != nil {
		return nil, err
	}
	return s.keys("trusted", append(key(kindTrusted, line), 0))
}

// Close releases the file. It is safe to call more than once.
func (s *FileStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("blocklist: close %s: %w", s.path, err)
	}
	return nil
}
