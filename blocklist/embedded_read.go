package blocklist

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

func (s *FileStore) Get(ctx context.Context, number string, isRange bool) (Entry, error) {
	if err := s.enter(notDone(ctx, "get"), isKey(number, isRange)); err != nil {
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
	if err := s.enter(notDone(ctx, "walk")); err != nil {
		return err
	}
	for _, isRange := range []bool{false, true} {
		prefix := []byte{kindOf(isRange)}
		after := prefix
		for {
			if err := s.enter(notDone(ctx, "walk")); err != nil {
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

func (s *FileStore) Protected(ctx context.Context) ([]string, error) {
	if err := s.enter(notDone(ctx, "protected")); err != nil {
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

func (s *FileStore) Trusted(ctx context.Context, line string) ([]string, error) {
	if err := s.enter(notDone(ctx, "trusted"), isLine(line)); err != nil {
		return nil, err
	}
	return s.keys("trusted", append(key(kindTrusted, line), 0))
}

func (s *FileStore) BlockedForLine(ctx context.Context, line string) ([]string, error) {
	if err := s.enter(notDone(ctx, "blocked for line"), isLine(line)); err != nil {
		return nil, err
	}
	return s.keys("blocked for line", append(key(kindLineBlock, line), 0))
}
