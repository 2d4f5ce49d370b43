package blocklist

import (
	"sync"
	"time"
)

// shortLived holds the embedded store's cooldown marks and velocity counters.
// They live only minutes and are touched on every call, so they stay in
// memory: a Lookup never writes to disk. They do not survive a restart; the
// worst case after one is a single extra call within a cooldown, or a
// velocity count that starts again from zero.
//
// Memory is bounded by what is alive: expired marks are swept once the maps
// have doubled since the last sweep, so the sweep cost is amortised over the
// inserts that made it necessary.
type shortLived struct {
	cmu       sync.RWMutex
	cooldown  map[string]int64 // line NUL caller -> deadline, Unix ns
	cNextScan int

	vmu       sync.Mutex
	velocity  map[string]*visits // caller -> lines reached
	vNextScan int
}

const minSweep = 1024

type visit struct {
	line string
	at   int64 // Unix ns
}

type visits struct {
	window int64 // the last window used, ns; decides when the record is dead
	list   []visit
}

func newShortLived() *shortLived {
	return &shortLived{
		cooldown:  make(map[string]int64),
		velocity:  make(map[string]*visits),
		cNextScan: minSweep,
		vNextScan: minSweep,
	}
}

func pairKey(line, caller string) string { return line + "\x00" + caller }

func (m *shortLived) markCooldown(line, caller string, deadline, now int64) {
	m.cmu.Lock()
	defer m.cmu.Unlock()
	// The latest mark wins, as a Redis SET with a TTL does.
	m.cooldown[pairKey(line, caller)] = deadline
	if len(m.cooldown) >= m.cNextScan {
		for k, d := range m.cooldown {
			if d <= now {
				delete(m.cooldown, k)
			}
		}
		m.cNextScan = max(minSweep, 2*len(m.cooldown))
	}
}

func (m *shortLived) inCooldown(line, caller string, now int64) bool {
	m.cmu.RLock()
	d, ok := m.cooldown[pairKey(line, caller)]
	m.cmu.RUnlock()
	return ok && d > now
}

// visit records that caller reached line at now and returns how many
// distinct lines it reached in (now-window, now].
func (m *shortLived) visit(caller, line string, now, window int64) int {
	m.vmu.Lock()
	defer m.vmu.Unlock()
	v := m.velocity[caller]
	if v == nil {
		v = &visits{}
		m.velocity[caller] = v
		if len(m.velocity) >= m.vNextScan {
			m.sweepVelocity(now)
		}
	}
	v.window = window
	cut := now - window
	kept := v.list[:0]
	found := false
	for _, x := range v.list {
		if x.line == line {
			x.at = max(x.at, now) // like ZADD GT: never move a visit back in time
			found = true
		}
		if x.at > cut {
			kept = append(kept, x)
		}
	}
	clear(v.list[len(kept):]) // drop references to pruned line names
	if !found {
		kept = append(kept, visit{line: line, at: now})
	}
	v.list = kept
	return len(kept)
}

func (m *shortLived) sweepVelocity(now int64) {
	for c, v := range m.velocity {
		newest := int64(0)
		for _, x := range v.list {
			newest = max(newest, x.at)
		}
		if len(v.list) > 0 && newest <= now-v.window {
			delete(m.velocity, c)
		}
	}
	m.vNextScan = max(minSweep, 2*len(m.velocity))
}

// sizes is for tests: how many marks and counters are held.
func (m *shortLived) sizes() (cooldowns, callers int) {
	m.cmu.RLock()
	cooldowns = len(m.cooldown)
	m.cmu.RUnlock()
	m.vmu.Lock()
	callers = len(m.velocity)
	m.vmu.Unlock()
	return
}

func nowOr(t time.Time, clock func() time.Time) time.Time {
	if t.IsZero() {
		return clock()
	}
	return t
}
