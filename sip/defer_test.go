package sip

import (
	"testing"
	"time"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/blocklist/redistest"
)

// A Redis that stops answering (CLIENT PAUSE: connected, silent) neither
// rings the line nor lets the caller through unscreened: by default
// (store_failure: retry) the caller gets 503 with Retry-After, so its
// network retries, and the line never hears of it.
func TestSilentStoreDefersCallWith503(t *testing.T) {
	srv := redistest.Start(t)
	st, err := blocklist.NewRedis(blocklist.RedisOptions{Addrs: []string{srv.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := newEnv(t, withStore(st))
	talkThenHangUp(t, e) // Redis answering: the call rings and talks

	ctx := ctxT(t, 10*time.Second)
	if _, err := srv.Do(ctx, "CLIENT", "PAUSE", "3000", "ALL"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out := e.dial(callerOK)
	res := wantFinal(t, out, 503)
	took := time.Since(start)
	if h := res.GetHeader("Retry-After"); h == nil || h.Value() != retryAfter {
		t.Errorf("503 carries Retry-After %v, want %q", h, retryAfter)
	}
	// Bounded by the store deadline, not Redis' 3 s socket timeouts or the
	// pause: the margin is for a busy box, where the 150 ms deadline's
	// goroutine may itself wait for a core.
	if took > 2*time.Second {
		t.Errorf("503 took %s with the store deadline at 150 ms", took)
	}
	if err := e.line.NoIncoming(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := e.waitRecord(ctx, outcomeDeferred); err != nil {
		t.Fatal(err)
	}
	e.waitNoCalls()
}
