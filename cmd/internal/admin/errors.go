package admin

import (
	"context"
	"errors"
	"net/http"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip"
)

// Sentinel errors. Each has a stable machine code and an HTTP status
// (CodeOf, the one place they are mapped); the message a person reads is
// the wrapped error's, the one the CLI has always printed (mark keeps it).
var (
	// ErrInvalidNumber: the text is no number, or not one that can be
	// blocked, trusted or checked (screening says why).
	ErrInvalidNumber = errors.New("invalid number")
	// ErrInvalidArgument: a field is missing or wrong (a limit, a cursor,
	// a reason too long for the store).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrUnknownLine: the configuration has no such line.
	ErrUnknownLine = errors.New("unknown line")
	// ErrNotFound: no such entry, contact or live call.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change contradicts what is stored (blocking a
	// number the line trusts, trusting one it blocks).
	ErrConflict = errors.New("conflict")
	// ErrInvalidConfig: a reload refused the configuration file (a bad
	// key or value, or a change only a restart applies); the running
	// configuration stays in force.
	ErrInvalidConfig = errors.New("invalid config")
	// ErrUnavailable: the store did not answer, or the operation needs a
	// part this service does not have (no running cleanline serve for live
	// calls; no event store; no reloader).
	ErrUnavailable = errors.New("unavailable")
	// ErrUnauthenticated: no bearer token, or one that is not configured.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: the token's scope does not reach this operation or line.
	ErrForbidden = errors.New("forbidden")
	// ErrInternal: anything else; a bug, logged by whoever serves it.
	ErrInternal = errors.New("internal error")
)

// kinds lists every sentinel with its code and status; CodeOf tries them in
// order, then the errors of the packages below, which the service passes
// through with their own messages.
var kinds = []struct {
	err    error
	code   string
	status int
}{
	{ErrInvalidNumber, "invalid_number", http.StatusBadRequest},
	{ErrInvalidArgument, "invalid_argument", http.StatusBadRequest},
	{ErrUnknownLine, "unknown_line", http.StatusNotFound},
	{ErrNotFound, "not_found", http.StatusNotFound},
	{ErrConflict, "conflict", http.StatusConflict},
	{ErrInvalidConfig, "invalid_config", http.StatusUnprocessableEntity},
	{ErrUnavailable, "unavailable", http.StatusServiceUnavailable},
	{ErrUnauthenticated, "unauthenticated", http.StatusUnauthorized},
	{ErrForbidden, "forbidden", http.StatusForbidden},
	{ErrInternal, "internal", http.StatusInternalServerError},
}

// CodeOf maps an error to its machine code and HTTP status: the one place
// an error becomes a status.
func CodeOf(err error) (code string, status int) {
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			return k.code, k.status
		}
	}
	switch {
	case errors.Is(err, screening.ErrNotANumber), errors.Is(err, screening.ErrInvalidNumber),
		errors.Is(err, screening.ErrWithheld):
		return CodeOf(ErrInvalidNumber)
	case errors.Is(err, blocklist.ErrNotFound), errors.Is(err, sip.ErrNoSuchCall):
		return CodeOf(ErrNotFound)
	case errors.Is(err, blocklist.ErrInvalid):
		return CodeOf(ErrInvalidArgument)
	case errors.Is(err, blocklist.ErrUnavailable), errors.Is(err, blocklist.ErrClosed),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return CodeOf(ErrUnavailable)
	}
	return CodeOf(ErrInternal)
}

// FromCode rebuilds an error from its code and message, as the API client
// receives them: it says message and is the code's sentinel (errors.Is),
// so both front doors answer alike. An unknown code is ErrInternal.
func FromCode(code, message string) error {
	kind := ErrInternal
	for _, k := range kinds {
		if k.code == code {
			kind = k.err
		}
	}
	return mark(kind, errors.New(message))
}

// coded is err, marked as kind without changing what it says.
type coded struct{ kind, err error }

func (c coded) Error() string   { return c.err.Error() }
func (c coded) Unwrap() []error { return []error{c.kind, c.err} }

// mark makes err match kind (errors.Is) and keeps its message.
func mark(kind, err error) error {
	if err == nil {
		return nil
	}
	return coded{kind, err}
}
