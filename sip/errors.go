package sip

import (
	"errors"
	"fmt"

	"github.com/emiago/sipgo/sip"
)

// Sentinel errors. Each maps to the SIP response a peer gets for it (see
// statusOf); wrap them with %w to add detail.
var (
	// ErrNotTrunk: an INVITE from a source that is neither a configured trunk
	// nor a configured line (RFC 3261 §21.4.4, 403: no open relay, no toll fraud).
	ErrNotTrunk = errors.New("sip: request from an unknown source")
	// ErrUnknownLine: the Request-URI names no configured line (404).
	ErrUnknownLine = errors.New("sip: no such line")
	// ErrMalformed: a request we cannot act on (400).
	ErrMalformed = errors.New("sip: malformed request")
	// ErrBadExtension: Require names an extension we do not support (420,
	// RFC 3261 §8.2.2.3); notably 100rel, which sipgo does not implement.
	ErrBadExtension = errors.New("sip: unsupported extension required")
	// ErrNotAcceptable: the SDP cannot be used: unparsable, no audio, no
	// common codec, or no offer at all (488, RFC 3261 §21.4.26).
	ErrNotAcceptable = errors.New("sip: session not acceptable")
	// ErrNoDialog: an in-dialog request for a dialog we do not have, or no
	// longer have (481, RFC 3261 §12.2.2).
	ErrNoDialog = errors.New("sip: call/transaction does not exist")
	// ErrForbidden: a request that would move or re-bridge a line, such as
	// REFER (RFC 3515) or INVITE with Replaces (RFC 3891) or Join (RFC 3911)
	// naming one of our dialogs (403).
	ErrForbidden = errors.New("sip: forbidden")
	// ErrShuttingDown: the server no longer takes calls (503).
	ErrShuttingDown = errors.New("sip: shutting down")
	// ErrOverloaded: no media ports or call slots left (503).
	ErrOverloaded = errors.New("sip: overloaded")
	// ErrTooSmall: a Session-Expires below our Min-SE (422, RFC 4028 §8.1).
	ErrTooSmall = errors.New("sip: session interval too small")
	// ErrLateOffer: an INVITE without an SDP offer (488 "Late Offer Not
	// Supported"; see refuseLateOffer for why).
	ErrLateOffer = fmt.Errorf("%w: INVITE without an SDP offer", ErrNotAcceptable)
	// ErrUnsupportedScheme: a Request-URI scheme other than sip, sips or tel
	// (416, RFC 3261 §8.2.2.1).
	ErrUnsupportedScheme = errors.New("sip: unsupported URI scheme")
	// ErrOutOfOrder: an in-dialog request whose CSeq is lower than the last
	// one (500 with Retry-After, RFC 3261 §12.2.2 and §14.2).
	ErrOutOfOrder = errors.New("sip: request out of order")
	// ErrBlocked: screening refused the caller, or the person did after the
	// warning (603 Decline, RFC 3261 §21.6.2: the callee does not wish to
	// take part, and no other place will do).
	ErrBlocked = errors.New("sip: call declined by screening")
	// ErrDeferred: screening had no verdict in time (503 with Retry-After,
	// RFC 3261 §21.5.4), so the caller's network retries rather than the
	// call ringing unscreened.
	ErrDeferred = errors.New("sip: screening deferred")
	// ErrBusy: the far side is busy (486, RFC 3261 §21.4.24).
	ErrBusy = errors.New("sip: far side busy")
	// ErrDeclined: the far side declined the call (603).
	ErrDeclined = errors.New("sip: far side declined")
	// ErrUnavailable: the far side did not answer or could not be reached
	// (480, RFC 3261 §21.4.18).
	ErrUnavailable = errors.New("sip: far side unavailable")
	// ErrNoCaller: the report code with no inbound caller to report (404).
	ErrNoCaller = errors.New("sip: no caller to report")
	// ErrNotPeer: an in-dialog request naming one of our dialogs from an
	// address other than that dialog's peer (403).
	ErrNotPeer = fmt.Errorf("%w: request from outside the dialog", ErrForbidden)
	// ErrNotAllowedMethod: a method cleanline does not take (405, RFC 3261
	// §8.2.1), from a trunk or a line; strangers get 403 for every method.
	ErrNotAllowedMethod = errors.New("sip: method not allowed")
	// ErrNoRoute: no trunk takes the lines' own calls (503).
	ErrNoRoute = errors.New("sip: no outbound trunk")
	// ErrUpstreamAuth: the provider challenged a line's call and refused
	// the subscriber's credentials, or asked for credentials the trunk has
	// none of (503: the line can do nothing about it; cleanline's upstream
	// is unavailable until its configuration is put right).
	ErrUpstreamAuth = errors.New("sip: provider refused our credentials")
	// ErrBarred: the line dialled a number its policy bars (premium rate,
	// international...; issue 12 §2). 403 (RFC 3261 §21.4.4: understood,
	// refused, and not to be repeated; authorization will not help).
	ErrBarred = errors.New("sip: number barred on this line")
	// ErrUnauthorized: a REGISTER without valid credentials, whoever it
	// names (401 with a fresh challenge, RFC 3261 §22.2); it wraps the
	// ErrAuthRequired that says why.
	ErrUnauthorized = errors.New("sip: unauthorized")
	// ErrIntervalTooBrief: a registration shorter than
	// sip.registrar.min_expires (423 with Min-Expires, RFC 3261 §10.3 step 7).
	ErrIntervalTooBrief = errors.New("sip: registration interval too brief")
	// ErrTooManyContacts: a new binding beyond the line's max_contacts
	// (403: the device is known, but the line holds all it may).
	ErrTooManyContacts = errors.New("sip: too many registered contacts")
	// ErrBadEvent: a NOTIFY of an event package cleanline does not pass on
	// (489 Bad Event, RFC 6665 §8.3.2); only message-summary is.
	ErrBadEvent = errors.New("sip: event package not supported")
	// ErrUnsupportedMedia: a body of a type cleanline does not take (415
	// with Accept, RFC 3261 §21.4.13).
	ErrUnsupportedMedia = errors.New("sip: unsupported media type")
	// ErrNotYourLine: a device registering an address-of-record that is
	// neither its username nor its line's name or numbers (403, RFC 3261
	// §10.3 step 4).
	ErrNotYourLine = fmt.Errorf("%w: not the device's address-of-record", ErrForbidden)
)

// statusOf maps an error to the response a peer gets for it.
func statusOf(err error) (int, string) {
	// The specific before the general: ErrLateOffer is an ErrNotAcceptable.
	switch {
	case err == nil:
		return sip.StatusOK, "OK"
	case errors.Is(err, ErrLateOffer):
		return sip.StatusNotAcceptableHere, "Late Offer Not Supported"
	case errors.Is(err, ErrUnsupportedScheme):
		return statusUnsupportedScheme, "Unsupported URI Scheme"
	case errors.Is(err, ErrOutOfOrder):
		return sip.StatusInternalServerError, "Server Internal Error"
	case errors.Is(err, ErrBarred):
		// The reason phrase is free text (RFC 3261 §21): what a phone's
		// display can show the person.
		return sip.StatusForbidden, "Number barred on this line"
	case errors.Is(err, ErrTooManyContacts):
		return sip.StatusForbidden, "Too Many Contacts"
	case errors.Is(err, ErrNotTrunk), errors.Is(err, ErrForbidden):
		return sip.StatusForbidden, "Forbidden"
	case errors.Is(err, ErrUnknownLine):
		return sip.StatusNotFound, "Not Found"
	case errors.Is(err, ErrMalformed):
		return sip.StatusBadRequest, "Bad Request"
	case errors.Is(err, ErrBadExtension):
		return sip.StatusBadExtension, "Bad Extension"
	case errors.Is(err, ErrNotAcceptable):
		return sip.StatusNotAcceptableHere, "Not Acceptable Here"
	case errors.Is(err, ErrNoDialog):
		return sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist"
	case errors.Is(err, ErrShuttingDown), errors.Is(err, ErrOverloaded):
		return sip.StatusServiceUnavailable, "Service Unavailable"
	case errors.Is(err, ErrTooSmall):
		return 422, "Session Interval Too Small"
	case errors.Is(err, ErrBlocked), errors.Is(err, ErrDeclined):
		return statusDecline, "Decline"
	case errors.Is(err, ErrDeferred), errors.Is(err, ErrNoRoute):
		return sip.StatusServiceUnavailable, "Service Unavailable"
	case errors.Is(err, ErrUpstreamAuth):
		return sip.StatusServiceUnavailable, "Provider Refused Our Credentials"
	case errors.Is(err, ErrBusy):
		return sip.StatusBusyHere, "Busy Here"
	case errors.Is(err, ErrUnavailable):
		return sip.StatusTemporarilyUnavailable, "Temporarily Unavailable"
	case errors.Is(err, ErrUnauthorized):
		return sip.StatusUnauthorized, "Unauthorized"
	case errors.Is(err, ErrIntervalTooBrief):
		return statusIntervalTooBrief, "Interval Too Brief"
	case errors.Is(err, ErrAuthRequired):
		return sip.StatusProxyAuthRequired, "Proxy Authentication Required"
	case errors.Is(err, ErrNotAllowedMethod):
		return sip.StatusMethodNotAllowed, "Method Not Allowed"
	case errors.Is(err, ErrNoCaller):
		return sip.StatusNotFound, "No Caller To Report"
	case errors.Is(err, ErrBadEvent):
		return statusBadEvent, "Bad Event"
	case errors.Is(err, ErrUnsupportedMedia):
		return sip.StatusUnsupportedMediaType, "Unsupported Media Type"
	}
	return sip.StatusInternalServerError, "Server Internal Error"
}

// headersOf are the headers the response for err carries besides its status.
func headersOf(err error) []sip.Header {
	switch {
	case errors.Is(err, ErrDeferred):
		return []sip.Header{sip.NewHeader("Retry-After", retryAfter)}
	case errors.Is(err, ErrUnsupportedMedia):
		// RFC 3261 §21.4.13: a 415 lists what is taken; the one body
		// cleanline takes is a voicemail summary (mwi.go).
		return []sip.Header{sip.NewHeader("Accept", mwiContentType)}
	case errors.Is(err, ErrOutOfOrder):
		// RFC 3261 §14.2: a 500 for a re-INVITE in progress carries a
		// Retry-After of 0 to 10 s.
		return []sip.Header{sip.NewHeader("Retry-After", "1")}
	}
	return nil
}

// farStatus maps the far side's final response to what it did, for the
// call record (farOutcome), and the error the caller is answered with.
func farStatus(code int) (string, error) {
	switch code {
	case sip.StatusBusyHere, 600:
		return "busy", ErrBusy
	case statusDecline:
		return "declined", ErrDeclined
	case sip.StatusRequestTimeout, sip.StatusTemporarilyUnavailable:
		return outcomeNoAnswer, ErrUnavailable
	}
	return "failed", ErrUnavailable
}

// statusDecline is 603 Decline (RFC 3261 §21.6.2), which sipgo has no name for.
const statusDecline = 603

// retryAfter is the Retry-After (RFC 3261 §20.33, seconds) of a call
// deferred because the store did not answer: long enough for a busy
// instance to drain, short enough that a retried call still rings.
const retryAfter = "2"

// statusBadEvent is 489 Bad Event (RFC 6665 §8.3.2).
const statusBadEvent = 489

// statusIntervalTooBrief is 423 Interval Too Brief (RFC 3261 §21.4.17).
const statusIntervalTooBrief = 423

// statusUnsupportedScheme is 416 Unsupported URI Scheme (RFC 3261 §21.4.13).
const statusUnsupportedScheme = 416
