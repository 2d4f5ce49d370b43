// Package media is CleanLine's media plane: the per-call RTP relay that
// anchors both legs of a call, SDP offer/answer, the shared prompt Player
// that speaks warnings into a leg, the default prompts, and DTMF (RFC 4733).
//
// The relay exists for one promise of the product (ARCHITECTURE.md, D1/D2): once
// a call is torn down, nothing of it can reach the line again. Relay.Close
// detaches the call from its two port pairs under the lock every forwarded
// packet holds, so once it returns not one more packet is sent for the call
// and nothing received is handled as its own. Close does not necessarily
// close the sockets: with PortPool.KeepWarm (serve's default) an ended
// call's pairs rest bound and owned by no call, and whatever reaches a
// resting pair is dropped, never forwarded. The first stray packet, RTP or
// RTCP, closes that pair's two sockets and sends its port to the back of the
// cold queue, so late RTP from a fraudster who ignores BYE loses its first
// packet and then hits a closed port, not a forwarding rule that might be
// re-opened. A quiet resting pair is handed to a new call once it has rested
// for the pool's rest period (sooner only when no cold port can be bound);
// a pool without KeepWarm, closed, or with its warm list full closes the
// pair's sockets in Close.
//
// A leg takes media only from its peer's SDP address, or for a peer behind
// NAT from the first source on the IP its signalling came from, latched
// once (source.go): whoever else sends to its ports is dropped unread.
//
// The package knows nothing about SIP; the B2BUA in package sip feeds it
// addresses from SDP (and, for a peer behind NAT, the IP that SDP came
// from) and decides when to bridge, play or close.
package media
