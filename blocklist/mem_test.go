package blocklist

import (
	"fmt"
	"testing"
	"time"
)

// TestShortLivedBounded: expired marks and counters are swept, so memory
// follows what is alive, not everything ever seen.
func TestShortLivedBounded(t *testing.T) {
	m := newShortLived()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	ms := int64(time.Millisecond)
	for i := 0; i < 100_000; i++ {
		now += ms
		c := fmt.Sprintf("+4474%08d", i)
		m.markCooldown("home", c, now+10*ms, now)
		m.visit(c, "home", now, 10*ms)
	}
	cooldowns, callers := m.sizes()
	if cooldowns > 2*minSweep || callers > 2*minSweep {
		t.Fatalf("after 100k short-lived marks: %d cooldowns, %d callers held", cooldowns, callers)
	}
	// Live ones are kept.
	if !m.inCooldown("home", "+447400099999", now) {
		t.Fatal("the newest cooldown was swept")
	}
}
