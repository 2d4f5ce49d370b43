package api

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/cmd/internal/admin"
)

// TestClientEveryOperation drives every operation of the API through the
// Client, as the CLI does, with every request and answer held to the
// served OpenAPI document; the client's answers and errors are the
// Service's own (code, message and sentinel).
func TestClientEveryOperation(t *testing.T) {
	f := newFixture(t, testTokens)
	v := newValidator(t, f)
	c := v.client(f, "ops")
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// wantErr: the client's error is the service's, word for word.
	wantErr := func(what string, got error, code string, direct error) {
		t.Helper()
		if c, _ := admin.CodeOf(got); c != code {
			t.Fatalf("%s: %v (code %s), want code %s", what, got, c, code)
		}
		if direct != nil && got.Error() != direct.Error() {
			t.Fatalf("%s: the client says %q, the service %q", what, got, direct)
		}
	}

	added, err := c.BlockAdd(ctx, admin.BlockAdd{Number: "020 7946 0123", Reason: "bank impersonation"})
	must(err)
	if !added.Added || added.Number != "+442079460123" || added.Status != blocklist.StatusConfirmed {
		t.Fatalf("BlockAdd = %+v", added)
	}
	kept, err := c.BlockAdd(ctx, admin.BlockAdd{Number: "+442079460123", Reported: true})
	must(err)
	if kept.Added || kept.Kept != blocklist.StatusConfirmed {
		t.Fatalf("BlockAdd --reported over confirmed = %+v", kept)
	}
	rng, err := c.BlockAdd(ctx, admin.BlockAdd{Number: "020 7946 03*", Source: "feed"})
	must(err)
	if rng.Number != "+4420794603*" {
		t.Fatalf("range = %+v", rng)
	}
	en, err := c.BlockGet(ctx, admin.NumberRef{Number: "020 7946 0123"})
	must(err)
	if en.Source != "api:ops" || en.Reason != "bank impersonation" {
		t.Fatalf("BlockGet = %+v: the API records its writes as the token's", en)
	}
	var listed []string
	q := admin.ListQuery{Limit: 1}
	for {
		p, err := c.BlockList(ctx, q)
		must(err)
		for _, e := range p.Items {
			listed = append(listed, e.Number)
		}
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
	}
	if !slices.Equal(listed, []string{"+442079460123", "+4420794603"}) {
		t.Fatalf("BlockList by pages of 1: %v", listed)
	}
	var exported int
	must(c.BlockExport(ctx, func(blocklist.Entry) error { exported++; return nil }))
	if exported != 2 {
		t.Fatalf("BlockExport: %d entries", exported)
	}
	rep, err := c.Report(ctx, admin.ReportIn{Line: "home", Number: "020 7946 0777"})
	must(err)
	if rep.Reports != 1 || rep.Source != "line:home" || rep.Status != blocklist.StatusReported {
		t.Fatalf("Report by line = %+v", rep)
	}
	rep, err = c.Report(ctx, admin.ReportIn{Number: "020 7946 0778"})
	must(err)
	if rep.Source != "api:ops" {
		t.Fatalf("Report = %+v", rep)
	}
	imp, err := c.Import(ctx, admin.ImportIn{Name: "feed.csv", Data: strings.NewReader("020 7946 0200,courier\nnot a number\n")})
	must(err)
	if imp.Added != 1 || imp.Rejected != 1 || len(imp.Rejects) != 1 || imp.Rejects[0].Line != 2 {
		t.Fatalf("Import = %+v", imp)
	}
	if e, err := f.store.Get(ctx, "+442079460200", false); err != nil || e.Source != "import:feed.csv" {
		t.Fatalf("imported entry %+v, %v", e, err)
	}

	ack, err := c.ProtectAdd(ctx, admin.NumberIn{Number: "159"})
	must(err)
	prot, err := c.ProtectList(ctx, admin.ListQuery{})
	must(err)
	if ack.Number != "+44159" || !slices.Equal(prot.Items, []string{"+44159"}) {
		t.Fatalf("ProtectAdd %+v, list %+v", ack, prot)
	}
	_, err = c.ProtectRemove(ctx, admin.NumberRef{Number: "159"})
	must(err)

	_, err = c.TrustAdd(ctx, admin.LineNumber{Line: "home", Number: "020 7946 0111"})
	must(err)
	trusted, err := c.TrustList(ctx, admin.LineList{Line: "home"})
	must(err)
	if !slices.Equal(trusted.Items, []string{"+442079460111"}) {
		t.Fatalf("TrustList = %+v", trusted)
	}
	_, err = c.LineBlockAdd(ctx, admin.LineNumber{Line: "home", Number: "020 7946 0111"})
	_, direct := f.svc.LineBlockAdd(ctx, admin.LineNumber{Line: "home", Number: "020 7946 0111"})
	wantErr("blocking a trusted contact", err, "conflict", direct)
	_, err = c.TrustRemove(ctx, admin.LineNumberRef{Line: "home", Number: "+442079460111"})
	must(err)
	_, err = c.LineBlockAdd(ctx, admin.LineNumber{Line: "home", Number: "020 7946 0111"})
	must(err)
	_, err = c.TrustAdd(ctx, admin.LineNumber{Line: "home", Number: "020 7946 0111"})
	wantErr("trusting a blocked number", err, "conflict", nil)
	blocked, err := c.LineBlockList(ctx, admin.LineList{Line: "home"})
	must(err)
	if !slices.Equal(blocked.Items, []string{"+442079460111"}) {
		t.Fatalf("LineBlockList = %+v", blocked)
	}
	chk, err := c.Check(ctx, admin.CheckIn{Number: "020 7946 0111", Line: "home"})
	must(err)
	if chk.Action != "block" || !slices.Equal(chk.Reasons, []string{"blocklist.line"}) {
		t.Fatalf("Check of a number blocked for the line = %+v", chk)
	}
	_, err = c.LineBlockRemove(ctx, admin.LineNumberRef{Line: "home", Number: "020 7946 0111"})
	must(err)

	chk, err = c.Check(ctx, admin.CheckIn{Number: "+442079460123"})
	must(err)
	if chk.Action != "block" || chk.Line != admin.DefaultLine || chk.Entry == nil || chk.Entry.Reason != "bank impersonation" {
		t.Fatalf("Check = %+v", chk)
	}
	chk, err = c.Check(ctx, admin.CheckIn{Number: "07700900124", International: true})
	must(err)
	if chk.Action != "block" || chk.Why == "" {
		t.Fatalf("Check of an invalid number = %+v", chk)
	}
	_, err = c.Check(ctx, admin.CheckIn{Number: "1", Line: "nosuch"})
	_, direct = f.svc.Check(ctx, admin.CheckIn{Number: "1", Line: "nosuch"})
	wantErr("check on no such line", err, "unknown_line", direct)
	if !errors.Is(err, admin.ErrUnknownLine) || err.Error() != `line "nosuch" is not in the config (lines: home, flat-2)` {
		t.Fatalf("unknown line: %v", err)
	}
	dial, err := c.CheckDial(ctx, admin.DialIn{Number: "0909 123 4567", Line: "home"})
	must(err)
	if dial.Action != "bar" || dial.Barred != "premium_rate" {
		t.Fatalf("CheckDial = %+v", dial)
	}

	lines, err := c.Lines(ctx, admin.ListQuery{})
	must(err)
	if len(lines.Items) != 2 || lines.Items[0].Name != "flat-2" || lines.Items[1].Features.LineCheck != "*99" {
		t.Fatalf("Lines = %+v", lines)
	}
	home, err := c.Line(ctx, admin.LineRef{Line: "home"})
	must(err)
	if !slices.Equal(home.Numbers, []string{"+442079460123"}) || home.Policy.Withheld != "warn" {
		t.Fatalf("Line = %+v", home)
	}

	// No SIP server, event store or reloader behind this Service: each
	// says so, through either door.
	for what, call := range map[string]func(admin.API) error{
		"live calls":      func(a admin.API) error { _, err := a.LiveCalls(ctx, admin.LiveQuery{}); return err },
		"line live calls": func(a admin.API) error { _, err := a.LiveCalls(ctx, admin.LiveQuery{Line: "home"}); return err },
		"end call":        func(a admin.API) error { _, err := a.EndCall(ctx, admin.CallRef{ID: "x"}); return err },
		"end line call":   func(a admin.API) error { _, err := a.EndCall(ctx, admin.CallRef{Line: "home", ID: "x"}); return err },
		"recent":          func(a admin.API) error { _, err := a.RecentCalls(ctx, admin.RecentQuery{}); return err },
		"line recent":     func(a admin.API) error { _, err := a.RecentCalls(ctx, admin.RecentQuery{Line: "home"}); return err },
		"reload":          func(a admin.API) error { _, err := a.Reload(ctx, admin.ReloadIn{}); return err },
		"upstream":        func(a admin.API) error { _, err := a.Upstream(ctx, admin.ListQuery{}); return err },
	} {
		wantErr(what, call(c), "unavailable", call(f.svc))
	}

	_, err = c.BlockAdd(ctx, admin.BlockAdd{Number: "abc"})
	_, direct = f.svc.BlockAdd(ctx, admin.BlockAdd{Number: "abc"})
	wantErr("bad number", err, "invalid_number", direct)
	_, err = c.BlockList(ctx, admin.ListQuery{Limit: 5000})
	wantErr("limit", err, "invalid_argument", nil)
	_, err = c.BlockList(ctx, admin.ListQuery{Cursor: "!!"})
	wantErr("cursor", err, "invalid_argument", nil)
	_, err = c.BlockRemove(ctx, admin.NumberRef{Number: "020 7946 0999"})
	_, direct = f.svc.BlockRemove(ctx, admin.NumberRef{Number: "020 7946 0999"})
	wantErr("remove absent", err, "not_found", direct)
	ack, err = c.BlockRemove(ctx, admin.NumberRef{Number: "020 7946 03*"})
	must(err)
	if ack.Number != "+4420794603*" {
		t.Fatalf("BlockRemove = %+v", ack)
	}

	// Every route of the API was answered, and checked.
	for _, rt := range Routes(Handlers{}) {
		if (rt.call != nil || rt.stream != nil) && v.seen[rt.ID] == 0 {
			t.Errorf("route %s was never exercised", rt.ID)
		}
	}
}
