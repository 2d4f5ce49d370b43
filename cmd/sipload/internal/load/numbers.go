package load

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
)

// Numbers draws caller numbers: from the blocklist with probability
// BlockedFraction, else from the pool. Draw is called by the single pacing
// goroutine only, so it needs no lock.
type Numbers struct {
	pool            []string
	blocked         []string
	blockedFraction float64
	rng             *rand.Rand
}

// NumbersConfig says where caller numbers come from.
type NumbersConfig struct {
	File            string  // one number per line; replaces the generated pool
	PoolSize        int     // generated pool size when File is empty
	PoolPrefix      string  // generated numbers are PoolPrefix + zero-padded index
	BlocklistFile   string  // numbers a screening peer is expected to decline
	BlockedFraction float64 // 0..1
	Seed            uint64
}

// maxE164 is the longest number E.164 allows, with its '+' (ITU-T E.164 §6: 15 digits).
const maxE164 = 16

// NewNumbers loads the files and builds the pool.
func NewNumbers(c NumbersConfig) (*Numbers, error) {
	n := &Numbers{blockedFraction: c.BlockedFraction, rng: rand.New(rand.NewPCG(c.Seed, c.Seed^0x9e3779b97f4a7c15))}
	if c.BlockedFraction < 0 || c.BlockedFraction > 1 {
		return nil, fmt.Errorf("%w: --blocked-fraction %g is not between 0 and 1", ErrConfig, c.BlockedFraction)
	}
	var err error
	if c.File != "" {
		if n.pool, err = ReadNumbers(c.File); err != nil {
			return nil, err
		}
	} else {
		if c.PoolSize <= 0 {
			return nil, fmt.Errorf("%w: --pool %d must be positive", ErrConfig, c.PoolSize)
		}
		width := maxE164 - len(c.PoolPrefix)
		if width < len(strconv.Itoa(c.PoolSize-1)) || !validNumber(c.PoolPrefix+"0") {
			return nil, fmt.Errorf("%w: --pool-prefix %q cannot hold %d numbers within 15 digits", ErrConfig, c.PoolPrefix, c.PoolSize)
		}
		// Pad to a fixed 13 characters (+44 and 10 digits, a UK number) when
		// that fits, so generated callers look like real ones.
		width = min(width, max(13-len(c.PoolPrefix), len(strconv.Itoa(c.PoolSize-1))))
		n.pool = make([]string, c.PoolSize)
		for i := range n.pool {
			n.pool[i] = fmt.Sprintf("%s%0*d", c.PoolPrefix, width, i)
		}
	}
	if c.BlocklistFile != "" {
		if n.blocked, err = ReadNumbers(c.BlocklistFile); err != nil {
			return nil, err
		}
	}
	if c.BlockedFraction > 0 && len(n.blocked) == 0 {
		return nil, fmt.Errorf("%w: --blocked-fraction %g needs a non-empty --blocklist file", ErrConfig, c.BlockedFraction)
	}
	return n, nil
}

// Draw returns a caller number and whether it came from the blocklist.
func (n *Numbers) Draw() (string, bool) {
	if n.blockedFraction > 0 && n.rng.Float64() < n.blockedFraction {
		return n.blocked[n.rng.IntN(len(n.blocked))], true
	}
	return n.pool[n.rng.IntN(len(n.pool))], false
}

// ReadNumbers reads one number per line; blank lines and # comments are
// skipped, a CSV line contributes its first field (so a SIPp injection file
// or a cleanline import file can be reused).
func ReadNumbers(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if i := strings.IndexAny(s, ",;"); i >= 0 {
			s = strings.TrimSpace(s[:i])
		}
		if s == "" || s[0] == '#' || s == "SEQUENTIAL" || s == "RANDOM" || s == "USER" {
			continue
		}
		if !validNumber(s) {
			return nil, fmt.Errorf("%w: %s:%d: %q is not a number (digits, optional leading +)", ErrConfig, path, line, s)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s holds no numbers", ErrConfig, path)
	}
	return out, nil
}

// validNumber accepts what can go in a SIP URI user part unescaped and what
// the blocklist keys use: an optional '+' and 1 to 15 digits.
func validNumber(s string) bool {
	d := strings.TrimPrefix(s, "+")
	if len(d) == 0 || len(d) > 15 {
		return false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return false
		}
	}
	return true
}
