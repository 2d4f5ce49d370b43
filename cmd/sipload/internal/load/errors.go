// Package load is the engine of sipload: a SIP call generator (Caller) and an
// answering endpoint (Answerer) on sipgo, with G.711 RTP on pion/rtp, and the
// statistics and reports both print. cmd/sipload only parses flags.
//
// Its G.711 encoder (rtp.go) and its SDP builder and parser (buildSDP,
// parseSDP) duplicate what cleanline has in sip/media on purpose: sipload is
// the peer that measures cleanline, and a peer that shared cleanline's code
// would share its bugs, so a wrong µ-law table or a misread SDP would go
// unseen on both ends at once. It imports nothing from this module outside
// cmd/sipload; keep it that way.
package load

import "errors"

// Sentinel errors; the command maps them to exit statuses. They are wrapped
// with %w and a one-line reason.
var (
	// ErrConfig: a flag or file the run cannot start with.
	ErrConfig = errors.New("bad configuration")
	// ErrUnreachable: the target did not answer the OPTIONS probe, or the
	// connection to it was refused.
	ErrUnreachable = errors.New("target unreachable")
)
