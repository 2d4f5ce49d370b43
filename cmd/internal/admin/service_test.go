package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip"
)

func newService(t *testing.T, lines ...string) (*Service, *blocklist.FileStore) {
	t.Helper()
	st, err := blocklist.OpenFile(filepath.Join(t.TempDir(), "cl.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sc, err := screening.New(st, screening.Config{Region: "GB"})
	if err != nil {
		t.Fatal(err)
	}
	var ls []Line
	for _, l := range lines {
		ls = append(ls, Line{Name: l})
	}
	svc, err := New(Deps{Store: st, Screener: sc, Lines: LinesFunc(func() []Line { return ls })})
	if err != nil {
		t.Fatal(err)
	}
	return svc, st
}

// Every error maps to one code and status, in one place, and the code
// comes back as the same sentinel with the same words.
func TestCodeOf(t *testing.T) {
	for _, c := range []struct {
		err    error
		code   string
		status int
	}{
		{fmt.Errorf("x: %w", screening.ErrNotANumber), "invalid_number", http.StatusBadRequest},
		{screening.ErrInvalidNumber, "invalid_number", http.StatusBadRequest},
		{fmt.Errorf("%w: +44", blocklist.ErrNotFound), "not_found", http.StatusNotFound},
		{fmt.Errorf("%w: x", sip.ErrNoSuchCall), "not_found", http.StatusNotFound},
		{blocklist.ErrInvalid, "invalid_argument", http.StatusBadRequest},
		{fmt.Errorf("%w: redis down", blocklist.ErrUnavailable), "unavailable", http.StatusServiceUnavailable},
		{blocklist.ErrClosed, "unavailable", http.StatusServiceUnavailable},
		{context.DeadlineExceeded, "unavailable", http.StatusServiceUnavailable},
		{mark(ErrConflict, errors.New("both")), "conflict", http.StatusConflict},
		{mark(ErrUnknownLine, errors.New("no")), "unknown_line", http.StatusNotFound},
		{ErrUnauthenticated, "unauthenticated", http.StatusUnauthorized},
		{ErrForbidden, "forbidden", http.StatusForbidden},
		{errors.New("a bug"), "internal", http.StatusInternalServerError},
	} {
		code, status := CodeOf(c.err)
		if code != c.code || status != c.status {
			t.Errorf("CodeOf(%v) = %s %d, want %s %d", c.err, code, status, c.code, c.status)
		}
		back := FromCode(code, c.err.Error())
		if back.Error() != c.err.Error() {
			t.Errorf("FromCode(%s) says %q, want %q", code, back, c.err)
		}
		if again, _ := CodeOf(back); again != code {
			t.Errorf("FromCode(%s) maps back to %s", code, again)
		}
	}
	if err := FromCode("conflict", "x"); !errors.Is(err, ErrConflict) {
		t.Errorf("FromCode(conflict) is not ErrConflict: %v", err)
	}
}

// Paging through the blocklist by small pages sees every entry once, in
// order, whatever is added meanwhile: what sorts after the cursor shows
// up, what sorts before it waits for the next listing.
func TestBlockListPages(t *testing.T) {
	svc, st := newService(t)
	ctx := context.Background()
	var want []string
	for i := range 23 {
		n := fmt.Sprintf("+4420794601%02d", i)
		if _, _, err := st.Put(ctx, []blocklist.Entry{{Number: n, Status: blocklist.StatusConfirmed}}); err != nil {
			t.Fatal(err)
		}
		want = append(want, n)
	}
	if _, _, err := st.Put(ctx, []blocklist.Entry{{Number: "+4420794602", Range: true, Status: blocklist.StatusReported}}); err != nil {
		t.Fatal(err)
	}
	want = append(want, "+4420794602*")
	var got []string
	q := ListQuery{Limit: 5}
	for pages := 0; ; pages++ {
		p, err := svc.BlockList(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) > 5 {
			t.Fatalf("a page of %d, limit 5", len(p.Items))
		}
		for _, e := range p.Items {
			got = append(got, display(e.Number, e.Range))
		}
		if pages == 1 {
			// Added during the listing: one before the cursor, one after.
			for _, n := range []string{"+442079460099", "+442079460199"} {
				if _, err := svc.BlockAdd(ctx, BlockAdd{Number: n}); err != nil {
					t.Fatal(err)
				}
			}
			want = append(want, "+442079460199")
		}
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("pages gave\n%v\nwant\n%v", got, want)
	}
	for _, bad := range []ListQuery{{Limit: -1}, {Limit: MaxLimit + 1}, {Cursor: "%%%"}} {
		if _, err := svc.BlockList(ctx, bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%+v: %v, want ErrInvalidArgument", bad, err)
		}
	}
}

// A line's own lists: a trusted contact cannot be blocked for the line
// and the other way round; lines not configured are refused by name.
func TestLineListsConflictAndLines(t *testing.T) {
	svc, _ := newService(t, "home", "flat-2")
	ctx := context.Background()
	if _, err := svc.TrustAdd(ctx, LineNumber{Line: "home", Number: "020 7946 0111"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.LineBlockAdd(ctx, LineNumber{Line: "home", Number: "+442079460111"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("blocking a trusted contact: %v", err)
	}
	if _, err := svc.LineBlockAdd(ctx, LineNumber{Line: "flat-2", Number: "+442079460111"}); err != nil {
		t.Fatalf("blocking it for another line: %v", err)
	}
	if _, err := svc.TrustAdd(ctx, LineNumber{Line: "flat-2", Number: "020 7946 0111"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("trusting a number blocked for the line: %v", err)
	}
	_, err := svc.TrustList(ctx, LineList{Line: "flat-9"})
	if !errors.Is(err, ErrUnknownLine) || err.Error() != `line "flat-9" is not in the config (lines: home, flat-2)` {
		t.Fatalf("unknown line: %v", err)
	}
	if _, err := svc.LiveCalls(ctx, LiveQuery{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("live calls with no B2BUA: %v", err)
	}
}

type upstreamFunc func() []sip.UpstreamState

func (f upstreamFunc) Upstream() []sip.UpstreamState { return f() }

// The trunks' registrations as the running B2BUA holds them, by trunk,
// paged; a time not set (no binding) is absent, not the zero time.
func TestUpstreamRegistrations(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	if _, err := svc.Upstream(ctx, ListQuery{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("without a B2BUA: %v; want unavailable", err)
	}
	now := time.Now()
	svc.upstream = upstreamFunc(func() []sip.UpstreamState {
		return []sip.UpstreamState{
			{Trunk: "a-provider", State: sip.UpstreamRegistered, LastStatus: 200, Since: now, Expires: now.Add(time.Hour), NextAttempt: now.Add(30 * time.Minute)},
			{Trunk: "b-provider", State: sip.UpstreamFailing, LastStatus: 403, LastReason: "Forbidden", Failures: 2, NextAttempt: now.Add(time.Minute)},
		}
	})
	page, err := svc.Upstream(ctx, ListQuery{Limit: 1})
	if err != nil || len(page.Items) != 1 || page.Next == "" {
		t.Fatalf("first page %+v, %v", page, err)
	}
	a := page.Items[0]
	if a.Trunk != "a-provider" || a.State != "registered" || a.Expires == nil || !a.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("first %+v", a)
	}
	page, err = svc.Upstream(ctx, ListQuery{Cursor: page.Next})
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("second page %+v, %v", page, err)
	}
	if b := page.Items[0]; b.Trunk != "b-provider" || b.LastStatus != 403 || b.Failures != 2 || b.Expires != nil || b.NextAttempt == nil {
		t.Fatalf("second %+v", b)
	}
}
