// Package media is CleanLine's media plane: the per-call RTP relay that
// anchors both legs of a call, SDP offer/answer, the prompt player that
// speaks warnings into a leg, the default prompts, and DTMF (RFC 4733).
//
// The relay exists for one promise of the product (design.md, D1/D2): once
// a call is torn down, nothing of it can reach the line again. Relay.Close
// closes the sockets themselves, so late RTP from a fraudster who ignores BYE
// hits a closed port instead of a forwarding rule that might be re-opened.
//
// The package knows nothing about SIP; the B2BUA in package sip feeds it
// addresses from SDP and decides when to bridge, play or close.
package media
