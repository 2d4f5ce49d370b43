package screening

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkNormalizerParse is a new caller every time: the cache is off, so
// each op pays libphonenumber's parse, validation and typing, which is what a
// busy line with mostly unique callers costs. The mix is mostly UK mobiles and
// geographic numbers in the forms trunks send, plus some NANP and other
// international callers.
func BenchmarkNormalizerParse(b *testing.B) {
	z, err := NewNormalizer("GB", 0)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	callers := make([]string, 4096)
	for i := range callers {
		switch i % 8 {
		case 0, 1, 2:
			callers[i] = fmt.Sprintf("sip:+4474%08d@trunk.example;user=phone", rng.IntN(100_000_000))
		case 3:
			callers[i] = fmt.Sprintf("07%09d", rng.IntN(1_000_000_000))
		case 4:
			callers[i] = fmt.Sprintf("020 7946 %04d", rng.IntN(10_000))
		case 5:
			callers[i] = fmt.Sprintf("+441%09d", rng.IntN(1_000_000_000))
		case 6:
			callers[i] = fmt.Sprintf("+1 650 %03d %04d", 200+rng.IntN(800), rng.IntN(10_000))
		case 7:
			callers[i] = fmt.Sprintf("00336%08d", rng.IntN(100_000_000))
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := z.Parse(callers[i%len(callers)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
