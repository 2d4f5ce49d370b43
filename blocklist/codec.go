package blocklist

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Binary record of one entry in the embedded store. The key (number or
// prefix) and the range flag live in the bbolt key and bucket, not here.
//
//	byte 0       format version (1)
//	byte 1       status: 'r' reported, 'c' confirmed
//	uvarint      reports
//	varint       first seen, Unix ms (0 = zero time)
//	varint       last seen, Unix ms
//	uvarint      len(reason), reason bytes
//	rest         source bytes
//
// About 20 bytes plus the text, and decoding allocates only the two strings.
// (Not benchmarked against encoding/json; it was chosen to keep the 1M-number
// file small and Lookup allocation-light.)
const codecVersion = 1

var errCorrupt = errors.New("blocklist: corrupt record")

func statusByte(s Status) byte {
	if s == StatusConfirmed {
		return 'c'
	}
	return 'r'
}

func byteStatus(b byte) (Status, bool) {
	switch b {
	case 'c':
		return StatusConfirmed, true
	case 'r':
		return StatusReported, true
	}
	return "", false
}

func appendEntry(dst []byte, e *Entry) []byte {
	dst = append(dst, codecVersion, statusByte(e.Status))
	dst = binary.AppendUvarint(dst, uint64(e.Reports))
	dst = binary.AppendVarint(dst, toMilli(e.FirstSeen))
	dst = binary.AppendVarint(dst, toMilli(e.LastSeen))
	dst = binary.AppendUvarint(dst, uint64(len(e.Reason)))
	dst = append(dst, e.Reason...)
	return append(dst, e.Source...)
}

// decodeEntry fills e from b; b may be memory the caller does not own (a
// bbolt page), so every string is copied.
func decodeEntry(b []byte, e *Entry) error {
	if len(b) < 2 || b[0] != codecVersion {
		return errCorrupt
	}
	st, ok := byteStatus(b[1])
	if !ok {
		return errCorrupt
	}
	b = b[2:]
	reports, n := binary.Uvarint(b)
	if n <= 0 || reports > 1<<31 {
		return errCorrupt
	}
	b = b[n:]
	first, n := binary.Varint(b)
	if n <= 0 {
		return errCorrupt
	}
	b = b[n:]
	last, n := binary.Varint(b)
	if n <= 0 {
		return errCorrupt
	}
	b = b[n:]
	rl, n := binary.Uvarint(b)
	if n <= 0 || rl > uint64(len(b)-n) {
		return errCorrupt
	}
	b = b[n:]
	e.Status = st
	e.Reports = int(reports)
	e.FirstSeen = fromMilli(first)
	e.LastSeen = fromMilli(last)
	e.Reason = string(b[:rl])
	e.Source = string(b[rl:])
	return nil
}

func corrupt(key string, err error) error {
	return fmt.Errorf("%w: record for %s: %w", ErrUnavailable, key, err)
}
