package blocklist

import (
	"bytes"
	"errors"
	"fmt"
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
//	'b' line NUL number      -> empty (blocked for that line only)
var (
	bucketData = []byte("blocklist")
	bucketMeta = []byte("meta") // "schema" -> version
)

const (
	kindEntry     = 'e'
	kindRange     = 'r'
	kindProtected = 'p'
	kindTrusted   = 't'
	kindLineBlock = 'b'
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
	db    *bolt.DB
	path  string
	clock func() time.Time
	mem   *shortLived
	gate  // closed; where is path
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
	return &FileStore{db: db, path: path, clock: cfg.clock, mem: newShortLived(), gate: gate{where: path}}, nil
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

// Local reports true: the file is memory-mapped in this process.
func (s *FileStore) Local() bool { return true }

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
