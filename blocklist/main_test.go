package blocklist_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

type quiet struct{}

func (quiet) Printf(context.Context, string, ...interface{}) {}

// leakGrace bounds how long goroutines may take to end after the tests.
// go-redis needs up to a second: once a pool has failed PoolSize dials (the
// *Down tests stop the server), it probes the server from a goroutine that
// sleeps 1 s between dials and returns at the first check after Close. A
// pool nobody closed probes forever, so that leak is still caught.
const leakGrace = 3 * time.Second

// TestMain fails the package if any goroutine outlives its tests: Close must
// stop everything a store started (pools, Sentinel listeners, Cluster
// reloads), and redistest must reap every process it ran. goleak.Find
// itself retries for about half a second; VerifyTestMain would give up then.
func TestMain(m *testing.M) {
	// go-redis logs every Sentinel switch and failed dial through a global
	// logger; the tests assert on those events themselves.
	redis.SetLogger(quiet{})
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(leakGrace)
		for err := goleak.Find(); err != nil; err = goleak.Find() {
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "goleak: goroutines still running %s after the tests: %v\n", leakGrace, err)
				code = 1
				break
			}
		}
	}
	os.Exit(code)
}
