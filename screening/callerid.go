package screening

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Sentinel errors; every error this package returns wraps one of them.
var (
	// ErrWithheld: the caller ID is withheld (anonymous, restricted, empty).
	ErrWithheld = errors.New("caller ID withheld")
	// ErrNotANumber: the text is not a phone number at all.
	ErrNotANumber = errors.New("not a phone number")
	// ErrInvalidNumber: it parses, but is not a valid, dialable number.
	ErrInvalidNumber = errors.New("not a valid number")
	// ErrPolicy: a policy or configuration value is wrong.
	ErrPolicy = errors.New("bad screening policy")
)

// withheldUsers are the user parts trunks put in From when the caller withheld
// the number. RFC 3323 §4.1.1.3 recommends "anonymous"; the others are seen on
// real trunks.
var withheldUsers = map[string]bool{
	"anonymous":   true,
	"unavailable": true,
	"restricted":  true,
	"private":     true,
	"withheld":    true,
	"unknown":     true,
}

// maxCallerIDLen bounds what we hand to the number parser; libphonenumber
// itself refuses more than 250 characters.
const maxCallerIDLen = 250

// CallerUser extracts the number-ish part of a caller ID as it arrives: a SIP
// or SIPS URI (user part), a tel: URI (RFC 3966), a name-addr ("Bob"
// <sip:...>), or plain digits in any national or international form. It
// returns ErrWithheld for anonymous forms and an empty user.
func CallerUser(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if len(s) > maxCallerIDLen {
		return "", fmt.Errorf("%w: caller ID longer than %d characters", ErrNotANumber, maxCallerIDLen)
	}
	// name-addr: take what is between the angle brackets (RFC 3261 §20.20).
	if i := strings.IndexByte(s, '<'); i >= 0 {
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			return "", fmt.Errorf("%w: %q has '<' without '>'", ErrNotANumber, raw)
		}
		s = strings.TrimSpace(s[i+1 : i+j])
	}
	lower := strings.ToLower(s)
	switch {
	case strings.HasPrefix(lower, "sip:"), strings.HasPrefix(lower, "sips:"):
		s = s[strings.IndexByte(s, ':')+1:]
		at := strings.LastIndexByte(s, '@')
		if at < 0 {
			// sip:host with no user part: nothing identifies the caller.
			return "", ErrWithheld
		}
		s = s[:at]
		// RFC 3261 §19.1.1: user may carry ;params (tel-style) and %-escapes.
		if i := strings.IndexByte(s, ';'); i >= 0 {
			s = s[:i]
		}
		if u, err := url.PathUnescape(s); err == nil {
			s = u
		}
	case strings.HasPrefix(lower, "tel:"):
		s = s[4:]
		// RFC 3966 §3: parameters follow ';'.
		if i := strings.IndexByte(s, ';'); i >= 0 {
			s = s[:i]
		}
	}
	s = strings.TrimSpace(s)
	if s == "" || withheldUsers[strings.ToLower(s)] {
		return "", ErrWithheld
	}
	return s, nil
}
