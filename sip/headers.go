package sip

import (
	"net/netip"
	"net/url"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Headers: what cleanline reads from a peer's headers (as text, for
// screening to interpret) and writes into its own, cut down to safe
// characters. Turning text into a number is screening's job, not this file's.

const allowMethods = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"

func sdpType() sip.Header {
	ct := sip.ContentTypeHeader("application/sdp")
	return &ct
}

// callerID is the caller ID a From header presents: its URI as text (sip:,
// sips: or tel:, RFC 3261 §20.20), which screening reads; "" without one.
func callerID(f *sip.FromHeader) string {
	if f == nil {
		return ""
	}
	return f.Address.String()
}

// unescapeUser undoes a URI user part's %-escapes (RFC 3261 §19.1.2);
// text that is not validly escaped is kept as it is.
func unescapeUser(u string) string {
	if s, err := url.PathUnescape(u); err == nil {
		return s
	}
	return u
}

// source is the transport address a request came from.
func source(req *sip.Request) netip.AddrPort {
	ap, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// privacyID reports "Privacy: id" (RFC 3325 §9.3) or "header"/"user"
// (RFC 3323 §4.2): the caller asked to be withheld.
func privacyID(req *sip.Request) bool {
	for _, h := range req.GetHeaders("Privacy") {
		for _, p := range strings.FieldsFunc(h.Value(), func(r rune) bool { return r == ';' || r == ',' || r == ' ' }) {
			switch strings.ToLower(p) {
			case "id", "header", "user":
				return true
			}
		}
	}
	return false
}

// safeUser keeps the characters a phone number or simple user part needs;
// everything else (CR, LF, quotes, angle brackets, ...) is dropped, so no
// header can be injected into the line's INVITE.
func safeUser(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 32 {
			break
		}
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || strings.ContainsRune("+*#.-_", r) {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}

// safeDisplay keeps printable characters other than quote and backslash,
// at most 40 of them.
func safeDisplay(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n >= 40 {
			break
		}
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			continue
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimSpace(b.String())
}
