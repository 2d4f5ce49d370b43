package blocklist

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

func (s *RedisStore) Get(ctx context.Context, number string, isRange bool) (Entry, error) {
	if err := s.enter(isKey(number, isRange)); err != nil {
		return Entry{}, err
	}
	var v string
	var err error
	if isRange {
		v, err = s.rdb.HGet(ctx, s.rangesKey(), number).Result()
	} else {
		v, err = s.rdb.Get(ctx, s.entryKey(number)).Result()
	}
	if errors.Is(err, redis.Nil) {
		return Entry{}, fmt.Errorf("%w: %s", ErrNotFound, number)
	}
	if err != nil {
		return Entry{}, s.fail("get", err)
	}
	e, err := decodeRedisEntry(number, isRange, v)
	if err != nil {
		return Entry{}, s.fail("get", err)
	}
	return e, nil
}

const (
	walkPage    = 1000 // entries fetched per round trip
	walkBuckets = 100  // listing buckets read per round trip
)

// Walk reads the exact-number listing a group of buckets at a time, then the
// ranges by member, so it holds one group or page at a time and sees each
// number once even while the listing changes.
func (s *RedisStore) Walk(ctx context.Context, fn func(Entry) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	if err := s.walkExact(ctx, fn); err != nil {
		return err
	}
	return s.walkRanges(ctx, fn)
}

func (s *RedisStore) walkExact(ctx context.Context, fn func(Entry) error) error {
	for b := 0; b < idxBuckets; b += walkBuckets {
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.StringSliceCmd, 0, walkBuckets)
		for i := b; i < min(b+walkBuckets, idxBuckets); i++ {
			cmds = append(cmds, pipe.SMembers(ctx, s.bucketKey(i)))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return s.fail("walk", err)
		}
		var nums []string
		for _, c := range cmds {
			for _, m := range c.Val() {
				nums = append(nums, "+"+m)
			}
		}
		for len(nums) > 0 {
			page := nums[:min(walkPage, len(nums))]
			nums = nums[len(page):]
			vals, err := s.getMany(ctx, page)
			if err != nil {
				return s.fail("walk", err)
			}
			if err := s.walkPage(page, false, vals, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *RedisStore) walkRanges(ctx context.Context, fn func(Entry) error) error {
	start := "-"
	for {
		members, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: s.rangesIdx(), Start: start, Stop: "+", ByLex: true, Count: walkPage,
		}).Result()
		if err != nil {
			return s.fail("walk", err)
		}
		if len(members) == 0 {
			return nil
		}
		vals, err := s.rdb.HMGet(ctx, s.rangesKey(), members...).Result()
		if err != nil {
			return s.fail("walk", err)
		}
		if err := s.walkPage(members, true, vals, fn); err != nil {
			return err
		}
		if len(members) < walkPage {
			return nil
		}
		start = "(" + members[len(members)-1]
	}
}

func (s *RedisStore) walkPage(numbers []string, isRange bool, vals []any, fn func(Entry) error) error {
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue // listed but gone: removed since, or a write cut short
		}
		e, err := decodeRedisEntry(numbers[i], isRange, str)
		if err != nil {
			return s.fail("walk", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// getMany GETs entry keys in one pipeline (MGET would be CROSSSLOT in a
// Cluster); missing keys come back as nil.
func (s *RedisStore) getMany(ctx context.Context, numbers []string) ([]any, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(numbers))
	for i, n := range numbers {
		cmds[i] = pipe.Get(ctx, s.entryKey(n))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]any, len(numbers))
	for i, c := range cmds {
		if v, err := c.Result(); err == nil {
			out[i] = v
		}
	}
	return out, nil
}

func (s *RedisStore) Protected(ctx context.Context) ([]string, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	return s.members(ctx, "protected", s.protectedIdx())
}

// members lists a score-0 zset, which Redis keeps in byte order.
func (s *RedisStore) members(ctx context.Context, op, key string) ([]string, error) {
	v, err := s.rdb.ZRange(ctx, key, 0, -1).Result()
	if err != nil {
		return nil, s.fail(op, err)
	}
	if v == nil {
		v = []string{}
	}
	return v, nil
}

func (s *RedisStore) Trusted(ctx context.Context, line string) ([]string, error) {
	if err := s.enter(isLine(line)); err != nil {
		return nil, err
	}
	return s.members(ctx, "trusted", s.lineIdx(line))
}

func (s *RedisStore) BlockedForLine(ctx context.Context, line string) ([]string, error) {
	if err := s.enter(isLine(line)); err != nil {
		return nil, err
	}
	return s.members(ctx, "blocked for line", s.lineBlockedIdx(line))
}
