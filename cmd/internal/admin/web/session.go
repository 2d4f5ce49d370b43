package web

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/netip"
	"sync"
	"time"
)

// Sessions: after a person signs in with a token, their browser holds a
// random session ID in a cookie; the token itself never leaves the sign-in
// form. The sessions live in memory (a restart signs everyone out), at
// most max of them, each until it expires.

// session is one signed-in browser.
type session struct {
	token   string // the token's name: it is looked up again on every request
	csrf    string // the per-session token every form carries
	expires time.Time
	flash   *flash // what the last change did, shown once
}

// flash is a one-time message after a change.
type flash struct {
	Text  string
	Error bool
}

// sessionKey is the SHA-256 of a session ID: the map is keyed by it, so a
// lookup's timing says nothing about IDs that exist.
type sessionKey [sha256.Size]byte

type sessions struct {
	mu  sync.Mutex
	by  map[sessionKey]*session
	max int
	ttl time.Duration
}

func newSessions(max int, ttl time.Duration) *sessions {
	return &sessions{by: map[sessionKey]*session{}, max: max, ttl: ttl}
}

// random is n random bytes as URL-safe text.
func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

func keyOf(id string) sessionKey { return sha256.Sum256([]byte(id)) }

// create starts a session for the token called name and returns its ID.
// When max sessions are live, the one that expires first makes room.
func (s *sessions) create(name string, now time.Time) (string, *session) {
	id := random(32)
	sess := &session{token: name, csrf: random(32), expires: now.Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.by) >= s.max {
		s.sweepLocked(now)
	}
	for len(s.by) >= s.max {
		var oldest sessionKey
		first := true
		for k, v := range s.by {
			if first || v.expires.Before(s.by[oldest].expires) {
				oldest, first = k, false
			}
		}
		delete(s.by, oldest)
	}
	s.by[keyOf(id)] = sess
	return id, sess
}

func (s *sessions) sweepLocked(now time.Time) {
	for k, v := range s.by {
		if !now.Before(v.expires) {
			delete(s.by, k)
		}
	}
}

// get is the session of id, a copy; false when there is none or it has
// expired (an expired one is forgotten).
func (s *sessions) get(id string, now time.Time) (session, bool) {
	if id == "" {
		return session{}, false
	}
	k := keyOf(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.by[k]
	if !ok {
		return session{}, false
	}
	if !now.Before(sess.expires) {
		delete(s.by, k)
		return session{}, false
	}
	return *sess, true
}

// end forgets the session of id (signing out).
func (s *sessions) end(id string) {
	s.mu.Lock()
	delete(s.by, keyOf(id))
	s.mu.Unlock()
}

// setFlash leaves a message for the session's next page.
func (s *sessions) setFlash(id string, f flash) {
	s.mu.Lock()
	if sess, ok := s.by[keyOf(id)]; ok {
		sess.flash = &f
	}
	s.mu.Unlock()
}

// takeFlash is the session's message, once.
func (s *sessions) takeFlash(id string) *flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.by[keyOf(id)]
	if !ok {
		return nil
	}
	f := sess.flash
	sess.flash = nil
	return f
}

// count is how many sessions are held.
func (s *sessions) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.by)
}

// Failed sign-ins are limited per source: after max wrong tokens within
// window, a source may not try again until the window is over, whatever
// it sends (a right token included), so a guesser gets max guesses a
// window. Sources are IPv4 addresses and IPv6 /64s (one host's share); at
// most sources of them are remembered, and when that many are guessing at
// once a new source is refused too: the page fails closed.

type limiter struct {
	mu      sync.Mutex
	max     int
	window  time.Duration
	sources int
	by      map[netip.Prefix]*tries
}

// tries are one source's failures in its current window.
type tries struct {
	n     int
	until time.Time // the window's end
}

func newLimiter(max int, window time.Duration, sources int) *limiter {
	return &limiter{max: max, window: window, sources: sources, by: map[netip.Prefix]*tries{}}
}

// sourceOf is the prefix failures of addr count against.
func sourceOf(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}

// allowed says whether src may try to sign in now; when not, until when.
func (l *limiter) allowed(src netip.Addr, now time.Time) (bool, time.Time) {
	p := sourceOf(src)
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.by[p]
	switch {
	case ok && !now.Before(t.until):
		delete(l.by, p)
		return true, time.Time{}
	case ok && t.n >= l.max:
		return false, t.until
	case !ok && len(l.by) >= l.sources:
		l.sweepLocked(now)
		if len(l.by) >= l.sources {
			return false, now.Add(l.window)
		}
	}
	return true, time.Time{}
}

// fail counts a wrong token from src.
func (l *limiter) fail(src netip.Addr, now time.Time) {
	p := sourceOf(src)
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.by[p]
	if !ok || !now.Before(t.until) {
		if !ok && len(l.by) >= l.sources {
			l.sweepLocked(now)
			if len(l.by) >= l.sources {
				return // allowed refuses it until there is room
			}
		}
		t = &tries{until: now.Add(l.window)}
		l.by[p] = t
	}
	t.n++
}

func (l *limiter) sweepLocked(now time.Time) {
	for p, t := range l.by {
		if !now.Before(t.until) {
			delete(l.by, p)
		}
	}
}
