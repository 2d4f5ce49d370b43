package storetest

import (
	"os"
	"strconv"
	"testing"
)

// BenchSizeEnv names the variable that sets how many numbers the large
// benchmarks of every package hold.
const BenchSizeEnv = "CLEANLINE_BENCH_NUMBERS"

// BenchSize is how many numbers a large benchmark holds: 1,000,000, or
// $CLEANLINE_BENCH_NUMBERS, or 10,000 with -short. One knob for the
// blocklist and screening benchmarks, so their figures describe the same data.
func BenchSize(tb testing.TB) int {
	if s := os.Getenv(BenchSizeEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			tb.Fatalf("%s=%q: want a positive integer", BenchSizeEnv, s)
		}
		return n
	}
	if testing.Short() {
		return 10_000
	}
	return 1_000_000
}
