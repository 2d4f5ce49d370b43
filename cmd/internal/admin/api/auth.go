package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/cleanline/cleanline/cmd/internal/admin"
)

// Scope is what a token may do.
type Scope string

const (
	// ScopeAdmin: everything.
	ScopeAdmin Scope = "admin"
	// ScopeRead: every GET of the API and the metrics; no change, no profile.
	ScopeRead Scope = "read"
	// ScopeCarer: its lines' routes (their calls, trusted contacts,
	// blocked numbers, reports, ending their live call); nothing else.
	ScopeCarer Scope = "carer"
)

// Token is a bearer token the API accepts.
type Token struct {
	Name   string // says who in logs and as the source of what it writes; never the secret
	Secret string
	Scope  Scope
	Lines  []string // ScopeCarer's lines
}

// MinSecret is the shortest secret a token may have.
const MinSecret = 16

// Validate says what is wrong with t, in the configuration's words.
func (t Token) Validate() error {
	switch {
	case t.Name == "":
		return errors.New("name: empty")
	case len(t.Secret) < MinSecret:
		return fmt.Errorf("token: shorter than %d characters", MinSecret)
	case t.Scope != ScopeAdmin && t.Scope != ScopeRead && t.Scope != ScopeCarer:
		return fmt.Errorf("scope %q: want admin, read or carer", t.Scope)
	case t.Scope == ScopeCarer && len(t.Lines) == 0:
		return errors.New("lines: a carer's token needs the lines it looks after")
	case t.Scope != ScopeCarer && len(t.Lines) > 0:
		return fmt.Errorf("lines: only a carer's token has lines (this one is %s)", t.Scope)
	}
	return nil
}

// keyring holds the tokens by the SHA-256 of their secrets.
type keyring struct {
	tokens []keyedToken
}

type keyedToken struct {
	digest [sha256.Size]byte
	Token
}

func newKeyring(tokens []Token) (*keyring, error) {
	k := &keyring{}
	names := map[string]bool{}
	for i, t := range tokens {
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("token %d (%q): %w", i, t.Name, err)
		}
		if names[t.Name] {
			return nil, fmt.Errorf("token %d: name %q used twice", i, t.Name)
		}
		names[t.Name] = true
		d := sha256.Sum256([]byte(t.Secret))
		for _, o := range k.tokens {
			if o.digest == d {
				return nil, fmt.Errorf("token %d (%q): the same secret as %q", i, t.Name, o.Name)
			}
		}
		t.Lines = slices.Clone(t.Lines)
		k.tokens = append(k.tokens, keyedToken{digest: d, Token: t})
	}
	return k, nil
}

// find is the token whose secret is secret. Every token's digest is
// compared, in constant time, whatever matched: how long it takes says
// nothing of which token, or how much of one, was right. (Digests, not
// secrets: ConstantTimeCompare returns at once on a length mismatch.)
func (k *keyring) find(secret string) *Token {
	d := sha256.Sum256([]byte(secret))
	var found *Token
	for i := range k.tokens {
		if subtle.ConstantTimeCompare(d[:], k.tokens[i].digest[:]) == 1 {
			found = &k.tokens[i].Token
		}
	}
	return found
}

// may says whether t may use route rt on line (the route's {line}).
func (t *Token) may(rt Route, line string) bool {
	switch t.Scope {
	case ScopeAdmin:
		return true
	case ScopeRead:
		return rt.Method == http.MethodGet && (rt.access == accessRead || rt.access == accessLine)
	case ScopeCarer:
		return rt.access == accessLine && t.Cares(line)
	}
	return false
}

// Cares says whether t may see and change line's own things (its calls,
// trusted contacts, blocked numbers, reports, ending its live call): an
// admin token every line's, a carer's its lines', a read token none.
func (t Token) Cares(line string) bool {
	return t.Scope == ScopeAdmin || t.Scope == ScopeCarer && slices.Contains(t.Lines, line)
}

// Tokens is the listener's token check, for the other front door on it
// (the carer's page, package web), which signs people in with a token: the
// same check as every API request's, so there is one.
type Tokens interface {
	// Identify is the token whose secret is secret, found as find finds a
	// bearer token; false when none is. Neither method hands out a secret.
	Identify(secret string) (Token, bool)
	// Named is the token called name as configured now; false when there
	// is none, so a session of a token that is gone ends.
	Named(name string) (Token, bool)
	// Open says that no token is configured (every API route is open).
	Open() bool
}

// Identify implements Tokens.
func (s *server) Identify(secret string) (Token, bool) {
	if t := s.keys.load().find(secret); t != nil {
		return cloneToken(*t), true
	}
	return Token{}, false
}

// Named implements Tokens.
func (s *server) Named(name string) (Token, bool) {
	for _, t := range s.keys.load().tokens {
		if t.Name == name {
			return cloneToken(t.Token), true
		}
	}
	return Token{}, false
}

// Open implements Tokens.
func (s *server) Open() bool { return len(s.keys.load().tokens) == 0 }

// cloneToken is t without its secret, with lines of its own: what another
// front door may keep.
func cloneToken(t Token) Token {
	t.Secret = ""
	t.Lines = slices.Clone(t.Lines)
	return t
}

// caller is who made a request: a token, or nobody when no token is
// configured (a loopback listener of one box).
type caller struct{ tok *Token }

func (c caller) name() string {
	if c.tok == nil {
		return ""
	}
	return c.tok.Name
}

// source is what the caller's writes are recorded as, when they name none.
func (c caller) source() string {
	if c.tok == nil {
		return "api"
	}
	return "api:" + c.tok.Name
}

// authenticate finds who sent r, and whether they may use rt. RFC 6750
// §3: no token or an unknown one is 401 (the client should authenticate),
// a known one without the scope 403.
func (s *server) authenticate(r *http.Request, rt Route) (caller, error) {
	keys := s.keys.load()
	if rt.access == accessOpen || len(keys.tokens) == 0 {
		return caller{}, nil
	}
	auth := r.Header.Get("Authorization")
	scheme, secret, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
		return caller{}, errNoToken
	}
	tok := keys.find(strings.TrimSpace(secret))
	if tok == nil {
		return caller{}, errBadToken
	}
	line := ""
	if rt.inPath("line") {
		line = r.PathValue("line")
	}
	if !tok.may(rt, line) {
		what := rt.Summary
		if line != "" && tok.Scope == ScopeCarer && rt.access == accessLine {
			return caller{tok}, admin.FromCode("forbidden", fmt.Sprintf("token %q may not touch line %s (its lines: %s)", tok.Name, line, strings.Join(tok.Lines, ", ")))
		}
		return caller{tok}, admin.FromCode("forbidden", fmt.Sprintf("token %q (scope %s) may not: %s", tok.Name, tok.Scope, strings.ToLower(what[:1])+what[1:]))
	}
	return caller{tok}, nil
}

// The 401s, each with the challenge it answers with.
var (
	errNoToken  = admin.FromCode("unauthenticated", "no bearer token: send Authorization: Bearer TOKEN")
	errBadToken = admin.FromCode("unauthenticated", "unknown bearer token")
)

// challenge is the WWW-Authenticate of a 401 (RFC 6750 §3).
func challenge(err error) string {
	if err == errBadToken {
		return `Bearer realm="cleanline", error="invalid_token"`
	}
	return `Bearer realm="cleanline"`
}
