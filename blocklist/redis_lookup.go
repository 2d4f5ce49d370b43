package blocklist

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lookup is one round trip: a pipeline of plain commands, no script. In a
// Cluster go-redis sends the caller's commands and the ranges HMGET to
// their two nodes in parallel, so it is still one round-trip time.
//
// Not a Lua script: on Redis 7 the script machinery cost the server more
// than the commands themselves (INFO commandstats per lookup, 100 ranges:
// 20.5us as a script plus HMGET, 13.4us as this pipeline, 29.8 and 15.9 with
// velocity, the HMGET being 9 of it); folding the HMGET into the script cost
// more still. The velocity commands need no atomicity: interleaved with
// another lookup of the same caller, ZCARD counts what some serial order
// would, or members that the other lookup is about to trim but that are
// inside this lookup's window.
func (s *RedisStore) Lookup(ctx context.Context, q Query) (Facts, error) {
	var f Facts
	if err := s.enter(isNumber("caller", q.Caller), isQueryLine(q.Line)); err != nil {
		return f, err
	}
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > s.lookupTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.lookupTimeout)
		defer cancel()
	}
	now := nowOr(q.Now, s.clock).UnixMilli()
	k := s.lookupKeys(q.Caller, q.Line)
	// Every prefix of the caller, longest first. go-redis takes *string
	// arguments: pointers box without an allocation each.
	prefixes := make([]string, len(q.Caller)-1)
	hmArgs := make([]any, 2, 2+len(prefixes))
	hmArgs[0], hmArgs[1] = "hmget", s.ranges
	for i := range prefixes {
		prefixes[i] = q.Caller[:len(q.Caller)-i]
		hmArgs = append(hmArgs, &prefixes[i])
	}
	// MGET, not GETs: a missing key is a nil element, not a redis.Nil
	// error, which go-redis classifies at a cost of a dozen allocations.
	// The protected mark is only ever the string "1".
	var cmds [8]redis.Cmder // one BatchProcess: no append growth in the pipeline
	strs := redis.NewSliceCmd(ctx, "mget", k.entry, k.prot, k.cool)
	line := any(q.Line) // boxed once for the commands that share it
	trust := redis.NewBoolCmd(ctx, "sismember", k.trust, line)
	lineBlocked := redis.NewBoolCmd(ctx, "sismember", k.lineBlock, line)
	ranges := redis.NewSliceCmd(ctx, hmArgs...)
	batch := append(cmds[:0], strs, trust, lineBlocked, ranges)
	var lines *redis.IntCmd
	if w := q.VelocityWindow.Milliseconds(); w > 0 {
		vel := any(k.vel)
		lines = redis.NewIntCmd(ctx, "zcard", vel)
		batch = append(batch, // PEXPIRE next to ZADD: no set is left without a TTL
			redis.NewIntCmd(ctx, "zadd", vel, "gt", now, line),
			redis.NewBoolCmd(ctx, "pexpire", vel, w),
			redis.NewIntCmd(ctx, "zremrangebyscore", vel, "-inf", now-w),
			lines)
	}
	pipe := s.rdb.Pipeline()
	_ = pipe.BatchProcess(ctx, batch...)
	if _, err := pipe.Exec(ctx); err != nil {
		return Facts{}, s.fail("lookup", err)
	}
	v := strs.Val()
	if len(v) != 3 {
		return Facts{}, s.fail("lookup", fmt.Errorf("MGET returned %d values for 3 keys", len(v)))
	}
	if str, ok := v[0].(string); ok {
		e, err := decodeRedisEntry(q.Caller, false, str)
		if err != nil {
			return Facts{}, s.fail("lookup", err)
		}
		f.Entry = &e
	}
	f.Protected = v[1] != nil
	f.Trusted = trust.Val()
	f.LineBlocked = lineBlocked.Val()
	if str, ok := v[2].(string); ok {
		d, err := strconv.ParseInt(str, 10, 64)
		if err != nil {
			return Facts{}, s.fail("lookup", fmt.Errorf("cooldown of %s: %q is not a deadline", q.Caller, str))
		}
		f.Cooldown = d > now
	}
	if lines != nil {
		f.DistinctLines = int(lines.Val())
	}
	for i, v := range ranges.Val() {
		if str, ok := v.(string); ok {
			e, err := decodeRedisEntry(prefixes[i], true, str)
			if err != nil {
				return Facts{}, s.fail("lookup", err)
			}
			f.Range = &e
			break
		}
	}
	return f, nil
}

// callerKeys are the keys one Lookup reads for a caller on a line.
type callerKeys struct{ entry, prot, trust, lineBlock, cool, vel string }

// lookupKeys builds entryKey, protKey, trustKey, lineBlockKey, coolKey and
// the velocity key in one allocation: Lookup runs on every call.
func (s *RedisStore) lookupKeys(caller, line string) callerKeys {
	tagLen := len(s.p) + len(caller) + 3 // P:{N}
	var b strings.Builder
	b.Grow(6*tagLen + 13 + len(line))
	var end [6]int
	for i, suffix := range [6]string{":e", ":p", ":t", ":b", ":v", ":c:"} {
		b.WriteString(s.p)
		b.WriteString(":{")
		b.WriteString(caller)
		b.WriteString("}")
		b.WriteString(suffix)
		if i == 5 {
			b.WriteString(line)
		}
		end[i] = b.Len()
	}
	all := b.String()
	return callerKeys{entry: all[:end[0]], prot: all[end[0]:end[1]], trust: all[end[1]:end[2]],
		lineBlock: all[end[2]:end[3]], vel: all[end[3]:end[4]], cool: all[end[4]:end[5]]}
}

// MarkCooldown stores the deadline as well as a TTL, so Lookup can compare it
// with Query.Now exactly as the embedded store does; the TTL only cleans up.
func (s *RedisStore) MarkCooldown(ctx context.Context, line, caller string, ttl time.Duration) error {
	if err := s.enter(isLine(line), isNumber("caller", caller), isTTL(ttl)); err != nil {
		return err
	}
	deadline := s.clock().Add(ttl).UnixMilli()
	if err := s.rdb.Set(ctx, s.coolKey(caller, line), deadline, ttl).Err(); err != nil {
		return s.fail("cooldown", err)
	}
	return nil
}
