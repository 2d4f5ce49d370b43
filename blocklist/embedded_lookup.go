package blocklist

import (
	"bytes"
	"context"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Lookup answers from one read-only transaction and the in-memory marks.
func (s *FileStore) Lookup(ctx context.Context, q Query) (Facts, error) {
	var f Facts
	// No notDone(ctx): a local read takes microseconds, and refusing it because
	// the caller's goroutine was descheduled past its deadline would only
	// turn a known answer into "unavailable" on a busy box.
	if err := s.enter(isNumber("caller", q.Caller), isQueryLine(q.Line)); err != nil {
		return f, err
	}
	now := nowOr(q.Now, s.clock).UnixNano()
	var kbuf [2 + maxLineLen + 16]byte // no allocation for keys
	k := append(kbuf[:0], kindTrusted)
	k = append(append(append(k, q.Line...), 0), q.Caller...)
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketData).Cursor()
		f.Trusted = q.Line != "" && get(c, k) != nil
		k[0] = kindLineBlock // same line NUL caller
		f.LineBlocked = q.Line != "" && get(c, k) != nil
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
	if err := s.enter(notDone(ctx, "cooldown"), isLine(line), isNumber("caller", caller), isTTL(ttl)); err != nil {
		return err
	}
	now := s.clock()
	s.mem.markCooldown(line, caller, now.Add(ttl).UnixNano(), now.UnixNano())
	return nil
}
