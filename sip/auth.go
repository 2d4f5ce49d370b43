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
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Digest authentication (RFC 3261 §22, with the algorithms of RFC 8760) of
// a line's own calls and of its devices' registrations. A line that has
// credentials, or a registered device, must prove them on every new INVITE,
// so a datagram forged with its source address gets a challenge, not a
// call to a premium-rate number: cleanline acts as the proxy in front of
// the trunk, hence 407 and Proxy-Authenticate (§22.3). A REGISTER is
// answered by cleanline as the registrar, a UAS: 401 and WWW-Authenticate
// (§22.2), and the credentials in Authorization.
//
// Nonces are stateless: the time they were made and an HMAC of it under a
// key that lives as long as the Server, so a flood of challenges costs no
// memory and a nonce from another instance or an old run is refused. What
// is kept is the answers that succeeded, until their nonce expires: a
// captured INVITE replayed from a forged address is refused (RFC 2617
// §3.2.2.5, nonce-count), and so is a captured answer put on another
// Request-URI (§22.4: the digest-uri must be the request's).

// LineAuth are the credentials of a line (sip.lines[].auth) or of one of
// its registering devices (sip.lines[].devices[]).
type LineAuth struct {
	// Username is what the device authenticates as.
	Username string `yaml:"username"`
	// Password is the shared secret; never logged.
	Password string `yaml:"password"`
	// PasswordFile holds the secret instead (its first line), e.g. a
	// systemd credential: the config file then holds no secret. Read at
	// start and at each reload.
	PasswordFile string `yaml:"password_file"`
	// Algorithms are those the device may answer with, offered in this
	// order of preference (RFC 8760 §2.4: one challenge each, the client
	// takes the first it supports). Default SHA-256, then MD5 for devices
	// that know only that.
	Algorithms []string `yaml:"algorithms"`

	secret string // Password, or PasswordFile's content
}

// String never shows the secret, whatever prints the credentials.
func (la LineAuth) String() string { return fmt.Sprintf("%s:[redacted]", la.Username) }

// ErrAuthRequired: a line's INVITE without valid credentials (407, with a
// fresh challenge; RFC 3261 §22.3).
var ErrAuthRequired = errors.New("sip: proxy authentication required")

// errNoCredentials: the request carried no answer for our realm (the
// first step of every authentication, not a failure to count).
var errNoCredentials = errors.New("no credentials")

const (
	authRealm = "cleanline"
	// nonceLife bounds a challenge's answer; a later one gets stale=true.
	nonceLife = 5 * time.Minute
	// maxAnswers bounds the answers remembered against replay. Only
	// correct answers are kept, so only a device that knows a password
	// can fill it; when full, answers are refused until entries expire.
	maxAnswers = 1 << 16
)

// authenticator makes and checks challenges for every line and device.
type authenticator struct {
	key [32]byte
	now func() time.Time
	// decoy answers for a username no device has: checked exactly as a
	// known one with a wrong password, against a random secret, so that
	// neither the answer nor its cost tells a guesser (svwar) who exists.
	decoy LineAuth

	mu   sync.Mutex
	used map[string]time.Time // nonce, nc and cnonce of each answer taken → its nonce's expiry
}

func newAuthenticator() *authenticator {
	a := &authenticator{now: time.Now, used: map[string]time.Time{}}
	_, _ = rand.Read(a.key[:])
	var b [24]byte
	_, _ = rand.Read(b[:])
	a.decoy = LineAuth{Algorithms: []string{"SHA-256", "MD5"}, secret: base64.RawStdEncoding.EncodeToString(b[:])}
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

// authHeaders names the challenge and answer headers for req's method:
// a REGISTER is answered by us as its UAS (RFC 3261 §22.2: 401,
// WWW-Authenticate, Authorization); any other request as the proxy in
// front of the trunk (§22.3: 407, Proxy-Authenticate, Proxy-Authorization).
func authHeaders(method sip.RequestMethod) (challenge, answer string) {
	if method == sip.REGISTER {
		return "WWW-Authenticate", "Authorization"
	}
	return "Proxy-Authenticate", "Proxy-Authorization"
}

// challenges are the challenge headers for a request of method, one per
// algorithm in algs, stale when the request's credentials were right but
// their nonce had expired.
func (a *authenticator) challenges(method sip.RequestMethod, algs []string, stale bool) []sip.Header {
	name, _ := authHeaders(method)
	nonce := a.nonce()
	out := make([]sip.Header, 0, len(algs))
	for _, alg := range algs {
		c := digest.Challenge{Realm: authRealm, Nonce: nonce, Algorithm: alg, QOP: []string{"auth"}, Stale: stale}
		out = append(out, sip.NewHeader(name, c.String()))
	}
	return out
}

// verify checks req's credentials against la (a line's, or one device's).
func (a *authenticator) verify(req *sip.Request, la *LineAuth) (stale bool, err error) {
	_, stale, err = a.verifyAny(req, func(string) *LineAuth { return la })
	return stale, err
}

// verifyAny checks req's credentials (Authorization for a REGISTER,
// Proxy-Authorization otherwise) against the credentials find returns for
// the username they name (nil: no such user, checked against the decoy).
// It returns the credentials proved, else ErrAuthRequired wrapped with why
// (for the log; the peer learns only 401 or 407; errNoCredentials when
// there was no answer at all), and whether a nonce was stale.
func (a *authenticator) verifyAny(req *sip.Request, find func(username string) *LineAuth) (la *LineAuth, stale bool, err error) {
	_, name := authHeaders(req.Method)
	hdrs := req.GetHeaders(name)
	if len(hdrs) == 0 {
		return nil, false, fmt.Errorf("%w: %w", ErrAuthRequired, errNoCredentials)
	}
	err = fmt.Errorf("%w: %w for realm %q", ErrAuthRequired, errNoCredentials, authRealm)
	for _, h := range hdrs {
		cred, perr := digest.ParseCredentials(h.Value())
		if perr != nil {
			err = fmt.Errorf("%w: unreadable credentials: %v", ErrAuthRequired, perr)
			continue
		}
		if cred.Realm != authRealm {
			continue
		}
		la = find(cred.Username)
		if la == nil {
			la = &a.decoy
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
		want, derr := digest.Digest(&chal, digest.Options{Method: string(req.Method), URI: cred.URI, Username: cred.Username,
			Password: la.secret, Count: cred.Nc, Cnonce: cred.Cnonce})
		// The username is compared in constant time too: a guesser learns
		// nothing from how long a wrong one takes.
		userOK := subtle.ConstantTimeCompare([]byte(cred.Username), []byte(la.Username)) == 1
		if derr != nil || !userOK || subtle.ConstantTimeCompare([]byte(want.Response), []byte(cred.Response)) != 1 {
			err = fmt.Errorf("%w: wrong credentials for %q", ErrAuthRequired, cred.Username)
			continue
		}
		if !fresh {
			return nil, true, fmt.Errorf("%w: stale nonce", ErrAuthRequired)
		}
		if !a.firstUse(cred, expires) {
			return nil, false, fmt.Errorf("%w: replayed answer (nonce and nc used before)", ErrAuthRequired)
		}
		return la, false, nil
	}
	return nil, false, err
}

// authFailed reports whether err is a wrong answer (what a guesser sends),
// not a first request without credentials nor a stale nonce.
func authFailed(err error, stale bool) bool {
	return err != nil && !stale && !errors.Is(err, errNoCredentials)
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

// validate checks la, reads its password file and fills its defaults;
// key names the config key.
func (la *LineAuth) validate(key string) error {
	switch {
	case la.Username == "":
		return cfgErr(key+".username", "empty")
	case strings.ContainsAny(la.Username, "\"\\\r\n"):
		return cfgErr(key+".username", "%q: no quotes, backslashes or line breaks", la.Username)
	case la.Password != "" && la.PasswordFile != "":
		return cfgErr(key, "password and password_file both set: keep one")
	case la.Password != "":
		la.secret = la.Password
	case la.PasswordFile != "":
		b, err := os.ReadFile(la.PasswordFile)
		if err != nil {
			return cfgErr(key+".password_file", "%v", err)
		}
		first, _, _ := strings.Cut(string(b), "\n")
		if la.secret = strings.TrimRight(first, "\r"); la.secret == "" {
			return cfgErr(key+".password_file", "%s: empty", la.PasswordFile)
		}
	default:
		return cfgErr(key, "password or password_file is required")
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
