package blocklist

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

func (s *FileStore) Report(ctx context.Context, number, source, reason string, at time.Time) (Entry, error) {
	if err := s.enter(notDone(ctx, "report"), isNumber("number", number), isText("source", source), isText("reason", reason)); err != nil {
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

// bulkPut is the batch size from which Put packs pages densely.
const bulkPut = 1000

// Put writes entries in one transaction; see Admin.Put and mergePut.
func (s *FileStore) Put(ctx context.Context, entries []Entry, opts ...PutOption) (added, updated int, err error) {
	if err := s.enter(notDone(ctx, "put"), areEntries(entries)); err != nil {
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
	cfg := putOptions(opts)
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
				e = mergePut(old, e, cfg.force)
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
	if err := s.enter(notDone(ctx, "remove"), isKey(number, isRange)); err != nil {
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

func (s *FileStore) Protect(ctx context.Context, number string) error {
	if err := s.enter(notDone(ctx, "protect"), isNumber("number", number)); err != nil {
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
	if err := s.enter(notDone(ctx, "unprotect"), isNumber("number", number)); err != nil {
		return err
	}
	return s.deleteKey("unprotect", key(kindProtected, number), "protected "+number)
}

func (s *FileStore) Trust(ctx context.Context, line, number string) error {
	if err := s.enter(notDone(ctx, "trust"), isLine(line), isNumber("number", number)); err != nil {
		return err
	}
	return s.putKey("trust", key(kindTrusted, line, number))
}

func (s *FileStore) Untrust(ctx context.Context, line, number string) error {
	if err := s.enter(notDone(ctx, "untrust"), isLine(line), isNumber("number", number)); err != nil {
		return err
	}
	return s.deleteKey("untrust", key(kindTrusted, line, number), number+" trusted by "+line)
}

func (s *FileStore) BlockForLine(ctx context.Context, line, number string) error {
	if err := s.enter(notDone(ctx, "block for line"), isLine(line), isNumber("number", number)); err != nil {
		return err
	}
	return s.putKey("block for line", key(kindLineBlock, line, number))
}

func (s *FileStore) UnblockForLine(ctx context.Context, line, number string) error {
	if err := s.enter(notDone(ctx, "unblock for line"), isLine(line), isNumber("number", number)); err != nil {
		return err
	}
	return s.deleteKey("unblock for line", key(kindLineBlock, line, number), number+" blocked for line "+line)
}
