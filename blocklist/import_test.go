package blocklist_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cleanline/cleanline/blocklist"
)

// Stand-ins for screening's normalisers: UK national "0..." to "+44...",
// spaces dropped, "+" numbers kept. Enough to drive the importer.
func normalize(s string) (string, error) {
	s = strings.ReplaceAll(s, " ", "")
	switch {
	case strings.HasPrefix(s, "+"):
	case strings.HasPrefix(s, "00"):
		s = "+" + s[2:]
	case strings.HasPrefix(s, "0"):
		s = "+44" + s[1:]
	default:
		return "", fmt.Errorf("%q: not a phone number", s)
	}
	if !blocklist.ValidNumber(s) {
		return "", fmt.Errorf("%q: not a valid number", s)
	}
	return s, nil
}

func normalizePrefix(s string) (string, error) {
	s = strings.ReplaceAll(s, " ", "")
	if strings.HasPrefix(s, "0") {
		s = "+44" + s[1:]
	}
	if !blocklist.ValidPrefix(s) {
		return "", fmt.Errorf("%q: not a valid prefix", s)
	}
	return s, nil
}

func importOpts() blocklist.ImportOptions {
	return blocklist.ImportOptions{Normalize: normalize, NormalizePrefix: normalizePrefix, Source: "import:test"}
}

func TestImport(t *testing.T) {
	ctx := context.Background()
	st := openFile(t, filepath.Join(t.TempDir(), "b.db"))
	in := "\ufeffnumber,reason,source,status\n" +
		"# a comment\n" +
		"\n" +
		"+442079460001\n" +
		"020 7946 0002,\"courier, fake police\",feed-a\n" +
		"  02079460003 , bank , , reported\r\n" +
		"+4420794601*,drama range\n" +
		"020 7946 02*\n" +
		"not a number\n" +
		"+442079460004,x,y,maybe\n" +
		"+442079460005,\"unterminated\n" +
		"+44207946*0\n" +
		"+442079460001,again\n" + // duplicate: an update
		"+442079460006,a,b,confirmed,extra\n" +
		strings.Repeat("9", 5000) + "\n" +
		"+442079460007" // no final newline
	res, err := blocklist.Import(ctx, strings.NewReader(in), st, importOpts())
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != 6 || res.Updated != 1 || res.Rejected != 6 || len(res.Rejects) != 6 || res.Lines != 16 {
		t.Fatalf("result: %+v", res)
	}
	wantLines := []int{9, 10, 11, 12, 14, 15}
	for i, r := range res.Rejects {
		if r.Line != wantLines[i] || !errors.Is(r.Err, blocklist.ErrInvalid) || r.Text == "" {
			t.Errorf("reject %d = %+v, want line %d wrapping ErrInvalid", i, r, wantLines[i])
		}
	}
	e, err := st.Get(ctx, "+442079460002", false)
	if err != nil || e.Reason != "courier, fake police" || e.Source != "feed-a" || e.Status != blocklist.StatusConfirmed {
		t.Fatalf("quoted CSV line: %+v, %v", e, err)
	}
	if e, _ := st.Get(ctx, "+442079460003", false); e.Status != blocklist.StatusReported || e.Reason != "bank" || e.Source != "import:test" {
		t.Fatalf("status column and default source: %+v", e)
	}
	if e, _ := st.Get(ctx, "+442079460001", false); e.Reason != "again" {
		t.Fatalf("duplicate line did not update: %+v", e)
	}
	for _, p := range []string{"+4420794601", "+4420794602"} {
		if _, err := st.Get(ctx, p, true); err != nil {
			t.Fatalf("range %s: %v", p, err)
		}
	}
	if _, err := st.Get(ctx, "+442079460007", false); err != nil {
		t.Fatalf("last line without newline: %v", err)
	}
}

func TestImportCapsRejects(t *testing.T) {
	st := openFile(t, filepath.Join(t.TempDir(), "b.db"))
	opt := importOpts()
	opt.MaxRejects = 10
	res, err := blocklist.Import(context.Background(), strings.NewReader(strings.Repeat("junk1\n", 50)+"+442079460001\n"), st, opt)
	if err != nil || res.Rejected != 50 || len(res.Rejects) != 10 || res.Added != 1 {
		t.Fatalf("%+v, %v", res, err)
	}
	opt.NormalizePrefix = nil
	res, err = blocklist.Import(context.Background(), strings.NewReader("+4420*\n"), st, opt)
	if err != nil || res.Rejected != 1 {
		t.Fatalf("range without NormalizePrefix: %+v, %v", res, err)
	}
	if _, err := blocklist.Import(context.Background(), strings.NewReader(""), st, blocklist.ImportOptions{}); !errors.Is(err, blocklist.ErrInvalid) {
		t.Fatalf("no Normalize: %v", err)
	}
}

// failingStore fails Put after some batches, like a store going down.
type failingStore struct {
	blocklist.Admin
	okBatches int
}

func (f *failingStore) Put(ctx context.Context, es []blocklist.Entry, opts ...blocklist.PutOption) (int, int, error) {
	if f.okBatches == 0 {
		return 0, 0, fmt.Errorf("%w: disk gone", blocklist.ErrUnavailable)
	}
	f.okBatches--
	return f.Admin.Put(ctx, es, opts...)
}

// errReader returns a read error after its data.
type errReader struct{ r io.Reader }

func (e errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset")
	}
	return n, err
}

func TestImportStops(t *testing.T) {
	ctx := context.Background()
	var b strings.Builder
	for i := 0; i < 25; i++ {
		fmt.Fprintf(&b, "+4420794600%02d\n", i)
	}
	st := openFile(t, filepath.Join(t.TempDir(), "b.db"))
	opt := importOpts()
	opt.BatchSize = 10
	res, err := blocklist.Import(ctx, strings.NewReader(b.String()), &failingStore{Admin: st, okBatches: 1}, opt)
	if !errors.Is(err, blocklist.ErrUnavailable) || res.Added != 10 || !strings.Contains(err.Error(), "lines 11-20") {
		t.Fatalf("store failure: %+v, %v", res, err)
	}
	res, err = blocklist.Import(ctx, errReader{strings.NewReader(b.String())}, st, opt)
	if err == nil || !strings.Contains(err.Error(), "connection reset") || res.Lines != 25 || res.Added+res.Updated != 25 {
		t.Fatalf("read failure: %+v, %v", res, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := blocklist.Import(cctx, strings.NewReader(b.String()), st, opt); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled import: %v", err)
	}
}

func TestParseImportLine(t *testing.T) {
	for _, c := range []struct {
		in   string
		want blocklist.ImportRecord
		err  error
	}{
		{"", blocklist.ImportRecord{}, blocklist.ErrSkip},
		{"   # x", blocklist.ImportRecord{}, blocklist.ErrSkip},
		{"+442079460123", blocklist.ImportRecord{Number: "+442079460123"}, nil},
		{"020 7946 01*", blocklist.ImportRecord{Number: "020 7946 01", Range: true}, nil},
		{`+44,"a ""quoted"" reason",src,Confirmed`, blocklist.ImportRecord{Number: "+44", Reason: `a "quoted" reason`, Source: "src", Status: blocklist.StatusConfirmed}, nil},
		{"*", blocklist.ImportRecord{}, blocklist.ErrInvalid},
		{",reason", blocklist.ImportRecord{}, blocklist.ErrInvalid},
		{`+44"1`, blocklist.ImportRecord{}, blocklist.ErrInvalid},
		{`"+44" x`, blocklist.ImportRecord{}, blocklist.ErrInvalid},
		{"+44,a,b,c,d", blocklist.ImportRecord{}, blocklist.ErrInvalid},
		{"+44,\x01", blocklist.ImportRecord{}, blocklist.ErrInvalid},
	} {
		got, err := blocklist.ParseImportLine(c.in)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("ParseImportLine(%q) error = %v, want %v", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseImportLine(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func FuzzParseImportLine(f *testing.F) {
	for _, s := range []string{
		"+442079460123", "020 7946 0123", "+4420794601*", "020 7946 01*",
		`+442079460123,"bank, fake",feed,reported`, "# comment", "", "number,reason",
		`"+44""1",x`, "+44,a,b,c,d", "\ufeff+44", "*", ",,,", `"`, "+44*,*",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, err := blocklist.ParseImportLine(line)
		if errors.Is(err, blocklist.ErrSkip) {
			return
		}
		if err != nil {
			if !errors.Is(err, blocklist.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if r.Number == "" || r.Number != strings.TrimSpace(r.Number) || strings.Contains(r.Number, "*") {
			t.Fatalf("bad number %q from %q", r.Number, line)
		}
		if r.Status != "" && !r.Status.Valid() {
			t.Fatalf("bad status %q", r.Status)
		}
		// What the parser accepts, the normaliser and store may still refuse,
		// but never by panicking.
		if n, err := normalize(r.Number); err == nil {
			_ = blocklist.ValidateEntry(blocklist.Entry{Number: n, Status: blocklist.StatusConfirmed, Reason: r.Reason, Source: r.Source, FirstSeen: time.Now()})
		}
	})
}

// TestImportKeepsConfirmed: importing a feed as reported does not downgrade
// numbers already confirmed (they stay blocked) unless ForceStatus is set;
// either way they count as updated.
func TestImportKeepsConfirmed(t *testing.T) {
	ctx := context.Background()
	st := openFile(t, filepath.Join(t.TempDir(), "b.db"))
	if _, _, err := st.Put(ctx, []blocklist.Entry{
		{Number: "+442079460001", Status: blocklist.StatusConfirmed, Reason: "bank impersonation", Source: "cli"},
		{Number: "+4420794601", Range: true, Status: blocklist.StatusConfirmed, Reason: "spoofed block", Source: "cli"},
	}); err != nil {
		t.Fatal(err)
	}
	feed := "+442079460001,feed reason\n+4420794601*\n+442079460002\n"
	opt := importOpts()
	opt.Status = blocklist.StatusReported
	res, err := blocklist.Import(ctx, strings.NewReader(feed), st, opt)
	if err != nil || res.Added != 1 || res.Updated != 2 || res.Rejected != 0 {
		t.Fatalf("reported import: %+v, %v; want 1 added, 2 updated", res, err)
	}
	for _, k := range []struct {
		n       string
		isRange bool
	}{{"+442079460001", false}, {"+4420794601", true}} {
		e, err := st.Get(ctx, k.n, k.isRange)
		if err != nil || e.Status != blocklist.StatusConfirmed || e.Source != "cli" {
			t.Fatalf("%s after a reported import: %+v, %v; want it still confirmed, source cli", k.n, e, err)
		}
	}
	if e, _ := st.Get(ctx, "+442079460002", false); e.Status != blocklist.StatusReported {
		t.Fatalf("new number from a reported import: %+v", e)
	}
	opt.ForceStatus = true
	res, err = blocklist.Import(ctx, strings.NewReader(feed), st, opt)
	if err != nil || res.Added != 0 || res.Updated != 3 {
		t.Fatalf("forced reported import: %+v, %v; want 3 updated", res, err)
	}
	if e, _ := st.Get(ctx, "+442079460001", false); e.Status != blocklist.StatusReported || e.Reason != "feed reason" || e.Source != "import:test" {
		t.Fatalf("after a forced reported import: %+v, want it reported with the feed's reason and source", e)
	}
	if e, _ := st.Get(ctx, "+4420794601", true); e.Status != blocklist.StatusReported {
		t.Fatalf("range after a forced reported import: %+v", e)
	}
}
