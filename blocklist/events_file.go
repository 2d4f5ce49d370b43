package blocklist

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The embedded store's event log: JSON-lines files in a directory next to
// the database (EventDir: cleanline.db → cleanline.events/), one record a
// line (an EventRecord as JSON). Files are numbered, 000001.jsonl onwards,
// and never renamed: the highest is written, and when the next batch would
// take it past FileBytes the next number begins and the oldest beyond
// Files are deleted. A reader in another process (the CLI while serve
// runs) needs no lock: it lists the files and reads them backwards, and a
// line still being written (no newline yet) is not a line.
//
// Durability: each batch is one write(2), so a record is readable, and
// survives the process, once AppendEvents returns; fsync follows at most
// eventSyncEvery later, and at rotation and Close. A power cut loses at
// most about the last second of events. (Blocklist writes, which people
// made, are fsynced before they return; events are a log of what happened.)

const eventSyncEvery = time.Second

// EventDir is the directory of the event log of the embedded store at dbPath.
func EventDir(dbPath string) string {
	ext := filepath.Ext(dbPath)
	return strings.TrimSuffix(dbPath, ext) + ".events"
}

// EventFile is the embedded store's event log. Appends are serialised (one
// writer at a time: serve's event goroutine); reads run beside them.
type EventFile struct {
	dir  string
	opts EventLogOptions
	gate

	mu     sync.Mutex
	f      *os.File // the file being written; nil when read-only
	seq    int      // its number
	size   int64
	dirty  bool // written since the last fsync
	syncer *time.Timer
	werr   error  // the last fsync's failure, returned by the next append
	buf    []byte // the lines of a batch, reused
}

var _ EventLog = (*EventFile)(nil)

// EventLog opens the event log next to the store's file.
func (s *FileStore) EventLog(opts EventLogOptions) (*EventFile, error) {
	return OpenEventFile(EventDir(s.path), opts)
}

// OpenEventFile opens (creating it unless ReadOnly) the event log in dir.
func OpenEventFile(dir string, opts EventLogOptions) (*EventFile, error) {
	l := &EventFile{dir: dir, opts: opts.withDefaults(), gate: gate{where: dir}}
	if opts.ReadOnly {
		if _, err := os.Stat(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: event log %s: %w", ErrUnavailable, dir, err)
		}
		return l, nil // an absent log is an empty one
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: event log %s: %w", ErrUnavailable, dir, err)
	}
	seqs, err := l.files()
	if err != nil {
		return nil, err
	}
	seq := 1
	if len(seqs) > 0 {
		seq = seqs[len(seqs)-1]
	}
	if err := l.openFile(seq); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *EventFile) name(seq int) string { return filepath.Join(l.dir, fmt.Sprintf("%06d.jsonl", seq)) }

// files lists the log's file numbers, oldest first.
func (l *EventFile) files() ([]int, error) {
	des, err := os.ReadDir(l.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: event log %s: %w", ErrUnavailable, l.dir, err)
	}
	var seqs []int
	for _, de := range des {
		n, ok := strings.CutSuffix(de.Name(), ".jsonl")
		if seq, err := strconv.Atoi(n); ok && err == nil && seq > 0 && len(n) >= 6 {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	return seqs, nil
}

// openFile makes file seq the one written. A line torn by a crash at its
// end is cut off, so the next record starts a line of its own.
func (l *EventFile) openFile(seq int) error {
	f, err := os.OpenFile(l.name(seq), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("%w: event log: %w", ErrUnavailable, err)
	}
	size, err := completeSize(f)
	if err == nil {
		err = f.Truncate(size)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("%w: event log %s: %w", ErrUnavailable, l.name(seq), err)
	}
	l.f, l.seq, l.size = f, seq, size
	return nil
}

// completeSize is the length of f's complete lines: up to its last newline.
func completeSize(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	end := st.Size()
	buf := make([]byte, 4096)
	for end > 0 {
		n := int64(len(buf))
		if n > end {
			n = end
		}
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return end - n + int64(i) + 1, nil
		}
		end -= n
	}
	return 0, nil
}

// AppendEvents writes the records as lines, in one write.
func (l *EventFile) AppendEvents(ctx context.Context, recs []EventRecord) error {
	if err := l.enter(notDone(ctx, "append events"), areEventRecords(recs)); err != nil {
		return err
	}
	if l.opts.ReadOnly {
		return fmt.Errorf("%w: event log %s opened read-only", ErrInvalid, l.dir)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return fmt.Errorf("%w: %s", ErrClosed, l.dir)
	}
	buf := l.buf[:0]
	for i := range recs {
		buf = appendRecordLine(buf, &recs[i])
	}
	l.buf = buf
	if err := l.werr; err != nil {
		l.werr = nil
		return fmt.Errorf("%w: event log %s: fsync: %w", ErrUnavailable, l.dir, err)
	}
	if l.size > 0 && l.size+int64(len(buf)) > l.opts.FileBytes {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	n, err := l.f.Write(buf)
	l.size += int64(n)
	if err != nil {
		// A part of a line may be written: cut it off, or the next line
		// would join it.
		if size, serr := completeSize(l.f); serr == nil && l.f.Truncate(size) == nil {
			l.size = size
		}
		return fmt.Errorf("%w: event log %s: %w", ErrUnavailable, l.dir, err)
	}
	if !l.dirty {
		l.dirty = true
		l.syncer = time.AfterFunc(eventSyncEvery, l.syncNow)
	}
	return nil
}

// appendRecordLine appends r as one line of JSON, as EventRecord's tags
// spell it, with the data as it is: built by hand, for encoding/json would
// scan and copy the data again (RawMessage), a third of what an event cost.
// Every field was checked (ValidateEventRecord): only the line's name may
// need escaping, and it holds no control character.
func appendRecordLine(b []byte, r *EventRecord) []byte {
	b = append(b, `{"time":"`...)
	b = fromMilli(toMilli(r.Time)).AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","type":"`...)
	b = append(b, r.Type...)
	b = append(b, `","line":"`...)
	for i := 0; i < len(r.Line); i++ {
		if c := r.Line[i]; c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, r.Line[i])
	}
	b = append(b, '"')
	if r.Caller != "" {
		b = append(b, `,"caller":"`...)
		b = append(b, r.Caller...)
		b = append(b, '"')
	}
	b = append(b, `,"call":"`...)
	b = append(b, r.Call...)
	b = append(b, `","data":`...)
	b = append(b, r.Data...)
	return append(b, "}\n"...)
}

// syncNow fsyncs what was written since the last fsync.
func (l *EventFile) syncNow() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.syncLocked()
}

func (l *EventFile) syncLocked() {
	if !l.dirty || l.f == nil {
		return
	}
	l.dirty = false
	if l.syncer != nil {
		l.syncer.Stop()
	}
	if err := l.f.Sync(); err != nil {
		l.werr = err
	}
}

// rotate fsyncs and closes the file being written, begins the next one,
// and deletes the oldest beyond Files.
func (l *EventFile) rotate() error {
	l.syncLocked()
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("%w: event log %s: %w", ErrUnavailable, l.name(l.seq), err)
	}
	l.f = nil
	if err := l.openFile(l.seq + 1); err != nil {
		return err
	}
	seqs, err := l.files()
	if err != nil {
		return err
	}
	for len(seqs) > l.opts.Files {
		if err := os.Remove(l.name(seqs[0])); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: event log: %w", ErrUnavailable, err)
		}
		seqs = seqs[1:]
	}
	// The directory entries (a new file, removed ones) are durable too.
	if d, err := os.Open(l.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Close fsyncs and closes the file. It is safe to call more than once.
func (l *EventFile) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	l.syncLocked()
	err := l.f.Close()
	l.f = nil
	if err == nil {
		err, l.werr = l.werr, nil
	}
	if err != nil {
		return fmt.Errorf("blocklist: close event log %s: %w", l.dir, err)
	}
	return nil
}

// Events reads the files newest first, each backwards from its end (or
// from the cursor), keeping the records q selects.
func (l *EventFile) Events(ctx context.Context, q EventQuery) (EventPage, error) {
	if err := l.enter(notDone(ctx, "read events"), isEventQuery(&q)); err != nil {
		return EventPage{}, err
	}
	limit := limitOf(q)
	fromSeq, fromOff := 0, int64(-1) // -1: from the end
	if q.Cursor != "" {
		var ok bool
		if fromSeq, fromOff, ok = parseFileCursor(q.Cursor); !ok {
			return EventPage{}, badCursor(q.Cursor)
		}
	}
	seqs, err := l.files()
	if err != nil {
		return EventPage{}, err
	}
	var page EventPage
	scanned := 0
	for i := len(seqs) - 1; i >= 0; i-- {
		seq, end := seqs[i], int64(-1)
		if fromSeq > 0 {
			if seq > fromSeq {
				continue
			}
			if seq == fromSeq {
				end = fromOff
			}
		}
		done, err := l.scanFile(ctx, seq, end, &q, limit, &scanned, &page)
		if err != nil {
			return EventPage{}, err
		}
		if done {
			return page, nil
		}
	}
	return page, nil
}

// scanFile reads file seq backwards from end (-1: its end), appending
// selected records to page; true when the page is complete or the scan
// budget spent (page.Next is then set).
func (l *EventFile) scanFile(ctx context.Context, seq int, end int64, q *EventQuery, limit int, scanned *int, page *EventPage) (bool, error) {
	f, err := os.Open(l.name(seq))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil // deleted by rotation meanwhile: it was the oldest
	}
	if err != nil {
		return false, fmt.Errorf("%w: event log: %w", ErrUnavailable, err)
	}
	defer f.Close()
	if end < 0 {
		if end, err = completeSize(f); err != nil {
			return false, fmt.Errorf("%w: event log: %w", ErrUnavailable, err)
		}
	}
	br := backLines{f: f, off: end}
	for {
		line, start, err := br.prev()
		if err != nil {
			return false, fmt.Errorf("%w: event log %s: %w", ErrUnavailable, l.name(seq), err)
		}
		if line == nil {
			return false, nil
		}
		if *scanned >= MaxEventScan {
			page.Next = fileCursor(seq, start+int64(len(line))+1) // this line included
			return true, nil
		}
		*scanned++
		if *scanned%1024 == 0 && ctx.Err() != nil {
			return false, fmt.Errorf("%w: read events %s: %w", ErrUnavailable, l.dir, ctx.Err())
		}
		var r EventRecord
		if json.Unmarshal(line, &r) != nil {
			continue // not a record: skipped
		}
		if !q.Since.IsZero() && r.Time.Before(q.Since.Add(-clockSlack)) {
			// Written in order, give or take the writer's queue: all
			// older lines are older still.
			return true, nil
		}
		if q.matches(r.Time, r.Type, r.Line, r.Caller, r.Call) {
			page.Records = append(page.Records, r)
			if len(page.Records) == limit {
				page.Next = fileCursor(seq, start)
				return true, nil
			}
		}
	}
}

// A file cursor is "seq.offset": go on with the lines of file seq that
// begin before offset, then older files.
func fileCursor(seq int, off int64) string {
	return strconv.Itoa(seq) + "." + strconv.FormatInt(off, 10)
}

func parseFileCursor(c string) (int, int64, bool) {
	s, o, ok := strings.Cut(c, ".")
	seq, err1 := strconv.Atoi(s)
	off, err2 := strconv.ParseInt(o, 10, 64)
	return seq, off, ok && err1 == nil && err2 == nil && seq > 0 && off >= 0
}

// backLines reads a file's lines backwards from off, which is the end of
// a line (or 0).
type backLines struct {
	f    *os.File
	off  int64  // where data begins in the file
	data []byte // file[off:off+len(data)]: whole lines not yet returned
}

const (
	backChunk   = 64 << 10
	maxLineSize = MaxEventData + 4096 // a record's data and its index fields
)

// prev returns the line before those returned so far, without its
// newline, and where it begins; nil at the file's start.
func (b *backLines) prev() ([]byte, int64, error) {
	for {
		if n := len(b.data); n > 0 {
			body := b.data[:n-1] // the last line, its newline dropped
			if i := bytes.LastIndexByte(body, '\n'); i >= 0 || b.off == 0 {
				line := body[i+1:]
				b.data = b.data[:i+1]
				return line, b.off + int64(i+1), nil
			}
		} else if b.off == 0 {
			return nil, 0, nil
		}
		if len(b.data) > maxLineSize {
			return nil, 0, fmt.Errorf("a line of more than %d bytes before offset %d", maxLineSize, b.off+int64(len(b.data)))
		}
		n := min(int64(backChunk), b.off)
		chunk := make([]byte, n, n+int64(len(b.data)))
		if _, err := b.f.ReadAt(chunk, b.off-n); err != nil {
			return nil, 0, err
		}
		b.data = append(chunk, b.data...)
		b.off -= n
	}
}
