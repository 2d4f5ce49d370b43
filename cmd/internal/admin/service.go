package admin

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/screening"
)

// DefaultLine is the line a check names when none is given: a line with
// the default policy.
const DefaultLine = "default"

// Deps are what a Service works with. Store and Screener are required; a
// nil Lines means no line is configured (any line name goes, as the store
// keeps whatever lines it is told); a nil Calls, Events, Reloader or Upstream makes
// the operations that need it answer ErrUnavailable, saying why. A nil
// Registrations leaves the lines' registered devices out.
type Deps struct {
	Store         blocklist.Admin
	Screener      *screening.Screener
	Lines         Lines
	Calls         Calls
	Events        Events
	Reloader      Reloader
	Upstream      Upstream
	Registrations Registrations
}

// Service is every administrative operation over the store, the screener
// and the running B2BUA (when there is one).
type Service struct {
	store  blocklist.Admin
	sc     atomic.Pointer[screening.Screener]
	lines  Lines
	calls  Calls
	events Events
	reload Reloader
	// upstream are the running service's registrations at providers.
	upstream Upstream
	// registrations are the running service's registered devices.
	registrations Registrations
	now           func() time.Time
}

// New builds a Service.
func New(d Deps) (*Service, error) {
	if d.Store == nil || d.Screener == nil {
		return nil, errors.New("admin: a Service needs a store and a screener")
	}
	s := &Service{store: d.Store, lines: d.Lines, calls: d.Calls, events: d.Events, reload: d.Reloader, upstream: d.Upstream,
		registrations: d.Registrations, now: time.Now}
	s.sc.Store(d.Screener)
	return s, nil
}

// SetScreener replaces the screener (a reload's new lines and policies);
// operations in flight finish with the one they started with.
func (s *Service) SetScreener(sc *screening.Screener) {
	if sc != nil {
		s.sc.Store(sc)
	}
}

func (s *Service) screener() *screening.Screener { return s.sc.Load() }

func (s *Service) norm() *screening.Normalizer { return s.screener().Normalizer() }

func (s *Service) configured() []Line {
	if s.lines == nil {
		return nil
	}
	return s.lines.Lines()
}

// knownLine refuses a line name the configuration does not have, when it
// names its lines; without any, every name goes.
func (s *Service) knownLine(line string) error {
	lines := s.configured()
	if len(lines) == 0 {
		if line == "" {
			return mark(ErrInvalidArgument, errors.New("no line given"))
		}
		return nil
	}
	names := make([]string, len(lines))
	for i, l := range lines {
		if l.Name == line {
			return nil
		}
		names[i] = l.Name
	}
	return mark(ErrUnknownLine, fmt.Errorf("line %q is not in the config (lines: %s)", line, strings.Join(names, ", ")))
}

// number reads a number a person typed that must be a valid, dialable one
// (blocklist entries, trusted contacts, reports).
func (s *Service) number(raw string) (string, error) {
	n, err := s.norm().Normalize(raw)
	return n, mark(ErrInvalidNumber, err)
}

// entryKey reads a number, or a range when it ends in '*'.
func (s *Service) entryKey(raw string) (string, bool, error) {
	if strings.HasSuffix(strings.TrimSpace(raw), "*") {
		p, err := s.norm().NormalizePrefix(raw)
		return p, true, mark(ErrInvalidNumber, err)
	}
	n, err := s.number(raw)
	return n, false, err
}

// display is an entry's key as people write it: a range ends in '*'.
func display(key string, isRange bool) string {
	if isRange {
		return key + "*"
	}
	return key
}

// unavailable is the error of an operation whose part is missing.
func unavailable(format string, a ...any) error {
	return mark(ErrUnavailable, fmt.Errorf(format, a...))
}
