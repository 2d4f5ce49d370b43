package blocklist

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ImportOptions configures Import.
type ImportOptions struct {
	// Normalize turns a number as written in the file into E.164
	// (screening provides it). Required.
	Normalize func(string) (string, error)
	// NormalizePrefix does the same for a range prefix (the text before the
	// '*'). When nil, range lines are rejected.
	NormalizePrefix func(string) (string, error)
	Status          Status // for lines without a status column; default confirmed
	Source          string // for lines without a source, e.g. "import:feed.csv"
	Reason          string // for lines without a reason
	// ForceStatus lets a line's status replace a stronger stored one. Without
	// it a reported line leaves a confirmed entry confirmed, with its reason
	// and source, and only moves its LastSeen forward; such an entry counts
	// as updated (see Admin.Put).
	ForceStatus bool
	// BatchSize is entries per Put. Zero means the store's preference when
	// it has one (FileStore: 100,000, since every bbolt commit rewrites the
	// pages it touches; RedisStore: 100,000, to group its listing writes),
	// else 5000.
	BatchSize  int
	MaxRejects int // rejected lines kept in the result; default 1000 (all are counted)
	// Now stamps FirstSeen/LastSeen of the imported entries; default time.Now.
	Now func() time.Time
}

// ImportResult says what an import did, also when it stopped early.
type ImportResult struct {
	Lines    int // lines read, including blank and comment lines
	Added    int // new entries stored
	Updated  int // existing entries replaced (FirstSeen and Reports kept), or kept stronger
	Rejected int // bad lines, all counted
	Rejects  []Reject
}

// Reject is one bad line.
type Reject struct {
	Line int    // 1-based line number
	Text string // the line, cut to 200 bytes
	Err  error  // wraps ErrInvalid
}

// ImportRecord is one data line of an import file, before normalisation.
type ImportRecord struct {
	Number string // as written, without the '*' of a range
	Range  bool   // the number ended in '*'
	Reason string
	Source string
	Status Status // empty when the line has none
}

// maxImportLine bounds one line; longer lines are rejected, not buffered.
const maxImportLine = 4096

// ErrSkip is returned by ParseImportLine for blank and comment lines.
var ErrSkip = errors.New("blocklist: blank or comment line")

// ParseImportLine parses one line: either a bare number, or CSV columns
// number,reason,source,status where every column after the number is
// optional and fields may be double-quoted ("" is a quote inside one). A
// number ending in '*' is a range prefix ("+4420794601*", "020 7946 01*").
// Blank lines and lines starting with '#' give ErrSkip; any other failure
// wraps ErrInvalid.
func ParseImportLine(line string) (ImportRecord, error) {
	var r ImportRecord
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return r, ErrSkip
	}
	fields, err := splitCSV(line)
	if err != nil {
		return r, err
	}
	if len(fields) > 4 {
		return r, fmt.Errorf("%w: %d columns, want at most 4 (number,reason,source,status)", ErrInvalid, len(fields))
	}
	for i := range fields {
		fields[i] = strings.TrimSpace(fields[i])
	}
	r.Number = fields[0]
	if rest, ok := strings.CutSuffix(r.Number, "*"); ok {
		r.Number, r.Range = strings.TrimSpace(rest), true
	}
	if r.Number == "" {
		return r, fmt.Errorf("%w: no number", ErrInvalid)
	}
	if strings.ContainsAny(r.Number, "*") {
		return r, fmt.Errorf("%w: '*' is allowed only at the end of a range", ErrInvalid)
	}
	if len(fields) > 1 {
		r.Reason = fields[1]
	}
	if len(fields) > 2 {
		r.Source = fields[2]
	}
	if len(fields) > 3 && fields[3] != "" {
		r.Status = Status(strings.ToLower(fields[3]))
		if !r.Status.Valid() {
			return r, fmt.Errorf("%w: status %q is neither %q nor %q", ErrInvalid, fields[3], StatusReported, StatusConfirmed)
		}
	}
	if err := checkText("reason", r.Reason); err != nil {
		return r, err
	}
	if err := checkText("source", r.Source); err != nil {
		return r, err
	}
	return r, nil
}

// splitCSV splits one line on commas, honouring double quotes (RFC 4180
// within a single line; a quoted field cannot span lines here, so one stray
// quote costs one line, not the rest of the file).
func splitCSV(line string) ([]string, error) {
	var fields []string
	for {
		if strings.HasPrefix(strings.TrimLeft(line, " \t"), `"`) {
			line = strings.TrimLeft(line, " \t")[1:]
			var b strings.Builder
			for {
				i := strings.IndexByte(line, '"')
				if i < 0 {
					return nil, fmt.Errorf("%w: unterminated quote", ErrInvalid)
				}
				b.WriteString(line[:i])
				line = line[i+1:]
				if strings.HasPrefix(line, `"`) {
					b.WriteByte('"')
					line = line[1:]
					continue
				}
				break
			}
			fields = append(fields, b.String())
			line = strings.TrimLeft(line, " \t")
			if line == "" {
				return fields, nil
			}
			if line[0] != ',' {
				return nil, fmt.Errorf("%w: text after a closing quote", ErrInvalid)
			}
			line = line[1:]
			continue
		}
		i := strings.IndexByte(line, ',')
		if i < 0 {
			if strings.ContainsRune(line, '"') {
				return nil, fmt.Errorf("%w: quote inside an unquoted field", ErrInvalid)
			}
			return append(fields, line), nil
		}
		if strings.ContainsRune(line[:i], '"') {
			return nil, fmt.Errorf("%w: quote inside an unquoted field", ErrInvalid)
		}
		fields = append(fields, line[:i])
		line = line[i+1:]
	}
}

// headerNames are first columns that mark a header row.
var headerNames = map[string]bool{
	"number": true, "numbers": true, "phone": true, "phone_number": true, "telephone": true,
	"e164": true, "caller": true, "msisdn": true, "prefix": true, "range": true, "cli": true,
}

// looksLikeHeader: the first data line may name its columns instead.
func looksLikeHeader(r ImportRecord) bool {
	n := strings.ToLower(strings.Trim(r.Number, `"' `))
	if headerNames[n] {
		return true
	}
	return !strings.ContainsAny(n, "0123456789")
}

// Import streams r into dst in batches: it holds one batch, never the file.
// Bad lines are counted and collected and never stop it; a read error, a
// store error or ctx ending stops it, and the result says how far it got.
func Import(ctx context.Context, r io.Reader, dst Admin, opt ImportOptions) (ImportResult, error) {
	var res ImportResult
	if opt.Normalize == nil {
		return res, fmt.Errorf("%w: import: ImportOptions.Normalize is required", ErrInvalid)
	}
	if opt.Status == "" {
		opt.Status = StatusConfirmed
	}
	if !opt.Status.Valid() {
		return res, fmt.Errorf("%w: import: default status %q", ErrInvalid, opt.Status)
	}
	if opt.BatchSize <= 0 {
		opt.BatchSize = 5000
		if p, ok := dst.(interface{ PreferredBatch() int }); ok && p.PreferredBatch() > 0 {
			opt.BatchSize = p.PreferredBatch()
		}
	}
	if opt.MaxRejects <= 0 {
		opt.MaxRejects = 1000
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	for what, s := range map[string]string{"default reason": opt.Reason, "default source": opt.Source} {
		if err := checkText(what, s); err != nil {
			return res, fmt.Errorf("import: %w", err)
		}
	}
	reject := func(n int, text string, err error) {
		res.Rejected++
		if len(res.Rejects) < opt.MaxRejects {
			if len(text) > 200 {
				text = text[:200]
			}
			res.Rejects = append(res.Rejects, Reject{Line: n, Text: text, Err: err})
		}
	}
	var putOpts []PutOption
	if opt.ForceStatus {
		putOpts = append(putOpts, ForceStatus())
	}
	batch := make([]Entry, 0, opt.BatchSize)
	batchFirstLine := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		a, u, err := dst.Put(ctx, batch, putOpts...)
		if err != nil {
			return fmt.Errorf("import: storing lines %d-%d (%d entries stored before them): %w",
				batchFirstLine, res.Lines, res.Added+res.Updated, err)
		}
		res.Added += a
		res.Updated += u
		batch = batch[:0]
		return nil
	}
	br := bufio.NewReaderSize(r, 64<<10)
	seenData := false
	for {
		raw, readErr := readLine(br)
		if readErr != nil && readErr != io.EOF && !errors.Is(readErr, errLongLine) {
			if err := flush(); err != nil {
				return res, err
			}
			return res, fmt.Errorf("import: reading after line %d: %w", res.Lines, readErr)
		}
		if raw == nil && readErr == io.EOF {
			break
		}
		res.Lines++
		n := res.Lines
		if errors.Is(readErr, errLongLine) {
			reject(n, string(raw), fmt.Errorf("%w: line longer than %d bytes", ErrInvalid, maxImportLine))
			continue
		}
		text := string(raw)
		if n == 1 {
			text = strings.TrimPrefix(text, "\ufeff") // a BOM from spreadsheet exports
		}
		rec, err := ParseImportLine(text)
		if errors.Is(err, ErrSkip) {
			continue
		}
		first := !seenData
		seenData = true
		if err != nil {
			if !(first && looksLikeHeader(rec)) {
				reject(n, text, err)
			}
			continue
		}
		e, err := toEntry(rec, &opt)
		if err != nil {
			if !(first && looksLikeHeader(rec)) {
				reject(n, text, err)
			}
			continue
		}
		if len(batch) == 0 {
			batchFirstLine = n
		}
		batch = append(batch, e)
		if len(batch) >= opt.BatchSize {
			if err := flush(); err != nil {
				return res, err
			}
			if err := ctx.Err(); err != nil {
				return res, fmt.Errorf("import: stopped after line %d: %w", n, err)
			}
		}
		if readErr == io.EOF {
			break
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	return res, nil
}

func toEntry(rec ImportRecord, opt *ImportOptions) (Entry, error) {
	var num string
	var err error
	if rec.Range {
		if opt.NormalizePrefix == nil {
			return Entry{}, fmt.Errorf("%w: ranges are not accepted by this import", ErrInvalid)
		}
		num, err = opt.NormalizePrefix(rec.Number)
	} else {
		num, err = opt.Normalize(rec.Number)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("%w: %q: %w", ErrInvalid, rec.Number, err)
	}
	now := opt.Now()
	e := Entry{Number: num, Range: rec.Range, Status: rec.Status, Reason: rec.Reason, Source: rec.Source,
		FirstSeen: now, LastSeen: now}
	if e.Status == "" {
		e.Status = opt.Status
	}
	if e.Reason == "" {
		e.Reason = opt.Reason
	}
	if e.Source == "" {
		e.Source = opt.Source
	}
	if err := ValidateEntry(e); err != nil {
		return Entry{}, err
	}
	return e, nil
}

var errLongLine = errors.New("line too long")

// readLine returns the next line without its end of line. A line longer than
// maxImportLine is returned cut short with errLongLine, and the rest of it is
// skipped. At the end it returns (nil, io.EOF), or (last, io.EOF) when the
// file does not end in a newline.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(line) > maxImportLine+2 {
		cut := bytes.Clone(line[:min(len(line), maxImportLine)])
		for err == bufio.ErrBufferFull {
			_, err = br.ReadSlice('\n')
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		return cut, errLongLine
	}
	if err != nil && err != io.EOF {
		return nil, err
	}
	if len(line) == 0 && err == io.EOF {
		return nil, io.EOF
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return line, err
}
