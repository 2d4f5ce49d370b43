package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Headers of every POST. The signature covers the timestamp and the body,
// so a receiver that refuses old timestamps refuses a replayed POST: an
// attacker who captured one can change neither.
const (
	HeaderSignature = "X-CleanLine-Signature" // "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + body)
	HeaderTimestamp = "X-CleanLine-Timestamp" // Unix seconds when this attempt was sent
	HeaderEvent     = "X-CleanLine-Event"     // the event's type
	HeaderDelivery  = "X-CleanLine-Delivery"  // the event's id (call-seq): the same on every retry, for deduplication
)

// Sign is the signature header's value for body sent at ts.
func Sign(secret []byte, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strconv.FormatInt(ts, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Errors of Verify.
var (
	ErrBadSignature = errors.New("webhook: bad signature")
	ErrStale        = errors.New("webhook: timestamp too old or too far ahead")
)

// Verify is what a receiver in Go does with a POST: the timestamp within
// tolerance of now (5 minutes is plenty) and the signature that of secret
// over timestamp and body, compared in constant time.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrBadSignature, timestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: %s", ErrStale, d.Round(time.Second))
	}
	want := Sign(secret, ts, body)
	if !strings.HasPrefix(signature, "sha256=") || !hmac.Equal([]byte(signature), []byte(want)) {
		return ErrBadSignature
	}
	return nil
}
