package sip

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Digest authentication of a line's own calls (RFC 3261 §22.3, with the
// algorithms of RFC 8760): a line that has credentials must prove them on
// every new INVITE, so a datagram forged with the line's source address
// gets a challenge, not a call to a premium-rate number. cleanline acts as
// the proxy in front of the trunk, hence 407 and Proxy-Authenticate.
//
// Nonces are stateless: the time they were made and an HMAC of it under a
// key that lives as long as the Server, so a flood of challenges costs no
// memory and a nonce from another instance or an old run is refused. What
// is kept is the answers that succeeded, until their nonce expires: a
// captured INVITE replayed from a forged address is refused (RFC 2617
// §3.2.2.5, nonce-count), and so is a captured answer put on another
// Request-URI (§22.4: the digest-uri must be the request's).

// LineAuth are a line's credentials.
type LineAuth struct {
	// Username is what the line's device authenticates as.
	Username string `yaml:"username"`
	// Password is the shared secret; never logged.
	Password string `yaml:"password"`
	// Algorithms are offered in this order of preference (RFC 8760 §2.4:
	// one challenge each, the client takes the first it supports). Default
	// SHA-256, then MD5 for devices that know only that.
	Algorithms []string `yaml:"algorithms"`
}

// ErrAuthRequired: a line's INVITE without valid credentials (407, with a
// fresh challenge; RFC 3261 §22.3).
var ErrAuthRequired = errors.New("sip: proxy authentication required")

const (
	authRealm = "cleanline"
	// nonceLife bounds a challenge's answer; a later one gets stale=true.
	nonceLife = 5 * time.Minute
	// maxAnswers bounds the answers remembered against replay. Only
	// correct answers are kept, so only a device that knows a password
	// can fill it; when full, answers are refused until entries expire.
	maxAnswers = 1 << 16
)

// authenticator makes and checks challenges for every line.
type authenticator struct {
	key [32]byte
	now func() time.Time

	mu   sync.Mutex
	used map[string]time.Time // nonce, nc and cnonce of each answer taken → its nonce's expiry
}

func newAuthenticator() *authenticator {
	a := &authenticator{now: time.Now, used: map[string]time.Time{}}
	_, _ = rand.Read(a.key[:])
	return a
}

// firstUse records a correct answer and reports whether it is new: the
// same nonce with the same nonce-count and cnonce is a replay.
func (a *authenticator) firstUse(cred *digest.Credentials, expires time.Time) bool {
	key := fmt.Sprintf("%s\x00%d\x00%s", cred.Nonce, cred.Nc, cred.Cnonce)
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if exp, ok := a.used[key]; ok && now.Before(exp) {
		return false
	}
	if len(a.used) >= maxAnswers {
		for k, exp := range a.used {
			if !now.Before(exp) {
				delete(a.used, k)
			}
		}
		if len(a.used) >= maxAnswers {
			return false
		}
	}
	a.used[key] = expires
	return true
}

func (a *authenticator) nonce() string {
	var b [8 + sha256.Size]byte
	binary.BigEndian.PutUint64(b[:8], uint64(a.now().UnixNano()))
	m := hmac.New(sha256.New, a.key[:])
	m.Write(b[:8])
	copy(b[8:], m.Sum(nil))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// checkNonce reports whether nonce is ours (ok), still fresh, and when it
// expires.
func (a *authenticator) checkNonce(nonce string) (ok, fresh bool, expires time.Time) {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != 8+sha256.Size {
		return false, false, time.Time{}
	}
	m := hmac.New(sha256.New, a.key[:])
	m.Write(b[:8])
	if !hmac.Equal(m.Sum(nil), b[8:]) {
		return false, false, time.Time{}
	}
	expires = time.Unix(0, int64(binary.BigEndian.Uint64(b[:8]))).Add(nonceLife)
	return true, a.now().Before(expires), expires
}

// challenges are the Proxy-Authenticate headers for la, stale when the
// request's credentials were right but their nonce had expired.
func (a *authenticator) challenges(la *LineAuth, stale bool) []sip.Header {
	nonce := a.nonce()
	out := make([]sip.Header, 0, len(la.Algorithms))
	for _, alg := range la.Algorithms {
		c := digest.Challenge{Realm: authRealm, Nonce: nonce, Algorithm: alg, QOP: []string{"auth"}, Stale: stale}
		out = append(out, sip.NewHeader("Proxy-Authenticate", c.String()))
	}
	return out
}

// verify checks req's Proxy-Authorization against la. It returns nil when
// one of them proves the password, else ErrAuthRequired wrapped with why
// (for the log; the peer learns only 407), and whether a nonce was stale.
func (a *authenticator) verify(req *sip.Request, la *LineAuth) (stale bool, err error) {
	hdrs := req.GetHeaders("Proxy-Authorization")
	if len(hdrs) == 0 {
		return false, fmt.Errorf("%w: no credentials", ErrAuthRequired)
	}
	err = fmt.Errorf("%w: no credentials for realm %q", ErrAuthRequired, authRealm)
	for _, h := range hdrs {
		cred, perr := digest.ParseCredentials(h.Value())
		if perr != nil {
			err = fmt.Errorf("%w: unreadable credentials: %v", ErrAuthRequired, perr)
			continue
		}
		if cred.Realm != authRealm {
			continue
		}
		alg := strings.ToUpper(cred.Algorithm)
		if alg == "" {
			alg = "MD5" // RFC 2617 §3.2.1: absent means MD5
		}
		if !offered(la, alg) {
			err = fmt.Errorf("%w: algorithm %q not offered", ErrAuthRequired, cred.Algorithm)
			continue
		}
		ours, fresh, expires := a.checkNonce(cred.Nonce)
		if !ours {
			err = fmt.Errorf("%w: not our nonce", ErrAuthRequired)
			continue
		}
		// RFC 3261 §22.4: the digest-uri must name what this request asks
		// for, or an answer captured on a call to a neighbour's number
		// would dial a premium-rate one.
		if !sameURI(cred.URI, req.Recipient) {
			err = fmt.Errorf("%w: digest uri %q is not the Request-URI", ErrAuthRequired, cred.URI)
			continue
		}
		chal := digest.Challenge{Realm: authRealm, Nonce: cred.Nonce, Algorithm: cred.Algorithm, Opaque: cred.Opaque}
		if cred.QOP != "" {
			chal.QOP = []string{cred.QOP}
		}
		want, derr := digest.Digest(&chal, digest.Options{Method: string(req.Method), URI: cred.URI, Username: la.Username,
			Password: la.Password, Count: cred.Nc, Cnonce: cred.Cnonce})
		// The username is compared in constant time too: a guesser learns
		// nothing from how long a wrong one takes.
		userOK := subtle.ConstantTimeCompare([]byte(cred.Username), []byte(la.Username)) == 1
		if derr != nil || !userOK || subtle.ConstantTimeCompare([]byte(want.Response), []byte(cred.Response)) != 1 {
			err = fmt.Errorf("%w: wrong credentials for %q", ErrAuthRequired, cred.Username)
			continue
		}
		if !fresh {
			return true, fmt.Errorf("%w: stale nonce", ErrAuthRequired)
		}
		if !a.firstUse(cred, expires) {
			return false, fmt.Errorf("%w: replayed answer (nonce and nc used before)", ErrAuthRequired)
		}
		return false, nil
	}
	return false, err
}

// sameURI compares a digest-uri with the Request-URI as RFC 3261 §19.1.4
// compares SIP URIs, for the parts a client writes: scheme, user (escapes
// undone), host (case-insensitive) and port.
func sameURI(digestURI string, ruri sip.Uri) bool {
	var u sip.Uri
	if err := sip.ParseUri(digestURI, &u); err != nil {
		return false
	}
	return strings.EqualFold(u.Scheme, ruri.Scheme) && unescapeUser(u.User) == unescapeUser(ruri.User) &&
		strings.EqualFold(u.Host, ruri.Host) && u.Port == ruri.Port
}

func offered(la *LineAuth, alg string) bool {
	for _, a := range la.Algorithms {
		if strings.EqualFold(a, alg) {
			return true
		}
	}
	return false
}

// validate checks la and fills its defaults; key names the config key.
func (la *LineAuth) validate(key string) error {
	if la.Username == "" || la.Password == "" {
		return cfgErr(key, "username and password are both required")
	}
	if len(la.Algorithms) == 0 {
		la.Algorithms = []string{"SHA-256", "MD5"}
	}
	for i, alg := range la.Algorithms {
		switch u := strings.ToUpper(alg); u {
		case "SHA-256", "MD5":
			la.Algorithms[i] = u
		default:
			return cfgErr(fmt.Sprintf("%s.algorithms[%d]", key, i), "%q: want SHA-256 or MD5", alg)
		}
	}
	return nil
}
