package limit

import (
	"bytes"
	"strconv"
)

// Framer follows the bytes a connection reads and tells whether the stream
// is between messages (nothing of a message pending) or inside one. One
// Framer per connection; Feed is called from the connection's reader only.
type Framer interface {
	// Feed takes the next bytes read and reports whether the stream is now
	// between messages.
	Feed(p []byte) (between bool)
}

// HeaderFramer returns a Framer factory for text protocols framed like
// RFC 822 messages on a stream: a header block ended by an empty line
// (CRLF CRLF, or LF LF), then a body of as many bytes as the first of
// lengthHeaders present says (names compared case-insensitively; none
// present: no body). Empty lines between messages are keep-alives: they
// leave the stream between messages.
func HeaderFramer(lengthHeaders ...string) func() Framer {
	names := make([][]byte, len(lengthHeaders))
	for i, h := range lengthHeaders {
		names[i] = []byte(h)
	}
	return func() Framer { return &headerFramer{names: names} }
}

// maxHeaderLine is how much of a header line the framer keeps to read a
// length from; longer lines are skipped (a length header is short).
const maxHeaderLine = 256

type headerFramer struct {
	names [][]byte

	inHeaders bool   // a message has begun; its header block is not over
	line      []byte // the header line so far (up to maxHeaderLine)
	long      bool   // line overflowed: not a length header
	length    int    // the body length read from the headers, -1 none
	body      int    // body bytes still to come
}

func (f *headerFramer) Feed(p []byte) bool {
	for len(p) > 0 {
		switch {
		case f.body > 0:
			n := min(f.body, len(p))
			f.body -= n
			p = p[n:]
		case !f.inHeaders:
			// Between messages: CR and LF are keep-alives.
			if c := p[0]; c == '\r' || c == '\n' {
				p = p[1:]
				continue
			}
			f.inHeaders, f.line, f.long, f.length = true, f.line[:0], false, -1
		default:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				f.add(p)
				return false
			}
			f.add(p[:i])
			p = p[i+1:]
			f.endLine()
		}
	}
	return !f.inHeaders && f.body == 0
}

func (f *headerFramer) add(p []byte) {
	if f.long {
		return
	}
	if len(f.line)+len(p) > maxHeaderLine {
		f.long = true
		return
	}
	f.line = append(f.line, p...)
}

// endLine handles a complete header line (its LF consumed).
func (f *headerFramer) endLine() {
	line := bytes.TrimSuffix(f.line, []byte("\r"))
	long := f.long
	f.line, f.long = f.line[:0], false
	if len(line) == 0 && !long {
		// The empty line: the header block is over.
		f.inHeaders = false
		if f.length > 0 {
			f.body = f.length
		}
		return
	}
	if long || f.length >= 0 {
		return
	}
	name, value, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return
	}
	name = bytes.TrimSpace(name)
	for _, n := range f.names {
		if bytes.EqualFold(name, n) {
			if v, err := strconv.Atoi(string(bytes.TrimSpace(value))); err == nil && v >= 0 {
				f.length = v
			}
			return
		}
	}
}
