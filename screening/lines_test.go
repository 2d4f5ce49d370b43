package screening

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

const (
	bank      = "+443001234567" // the line's bank (0300 123 4567)
	careHelp  = "+442079460555" // screening.protected: the care home's own helpline
	otherLine = "+442079460124"
)

func dialScreener(t *testing.T) *Screener {
	t.Helper()
	st := openStore(t)
	if err := st.Protect(context.Background(), "+442079460444"); err != nil {
		t.Fatal(err)
	}
	return newScreener(t, st, Config{
		Protected: []string{"020 7946 0555"},
		Lines: []Line{
			{Name: "home", Numbers: []string{"+442079460123", "landline"}, Policy: LinePolicy{Protected: []string{"0300 123 4567"}}},
			{Name: "office", Numbers: []string{"020 7946 0124"}},
		},
	})
}

// TestDialledProtectedInEveryForm: D4's classification. A protected number
// is the same number in national, international and 00 form and with the
// separators a phone may send; for a built-in, a screening.protected, a
// per-line and a store-protected number. Numbers that merely resemble one
// are not protected.
func TestDialledProtectedInEveryForm(t *testing.T) {
	sc := dialScreener(t)
	ctx := context.Background()
	protected := map[string][]string{
		"built-in 999":        {"999", "+44999", "0044 999"},
		"built-in 101":        {"101", "+44 101"},
		"built-in 159":        {"159", "tel:159", "sip:159@cleanline"},
		"screening.protected": {"02079460555", "020 7946 0555", "+442079460555", "0044 20 7946 0555", "+44 (0)20-7946-0555", "(020) 7946.0555"},
		"the line's bank":     {"03001234567", "0300 123 4567", "+443001234567", "+44 300 123 4567", "00443001234567", "0300-123-4567", "tel:+44-300-123-4567", "sip:03001234567@cleanline;user=phone", "sip:0300%20123%204567@cleanline"},
		"the store's":         {"020 7946 0444", "+442079460444"},
	}
	for what, forms := range protected {
		for _, f := range forms {
			if d := sc.Dialled(ctx, "home", f); !d.Protected || d.Feature != NoFeature {
				t.Errorf("%s: Dialled(home, %q) = %+v; want protected", what, f, d)
			}
		}
	}
	for _, f := range []string{"999", "112"} {
		if d := sc.Dialled(ctx, "home", f); !d.Emergency {
			t.Errorf("Dialled(%q) = %+v; want emergency", f, d)
		}
	}
	for _, f := range []string{
		"0300 123 456", "0300 123 45678", "03001234568", // a prefix, one more digit, a neighbour
		"9999", "99", "1010", "020 7946 055", "+4420794605550", "0207946044",
		"020 7946 0018", "+12025550100",
	} {
		if d := sc.Dialled(ctx, "home", f); d.Protected || d.Emergency {
			t.Errorf("Dialled(home, %q) = %+v; want an ordinary number", f, d)
		}
	}
	// The bank is home's, not office's; the built-ins and screening.protected are everyone's.
	if d := sc.Dialled(ctx, "office", "0300 123 4567"); d.Protected {
		t.Errorf("office dialling home's bank: %+v; want not protected", d)
	}
	for _, f := range []string{"999", "020 7946 0555"} {
		if d := sc.Dialled(ctx, "office", f); !d.Protected {
			t.Errorf("office dialling %q: %+v; want protected", f, d)
		}
	}
	if d := sc.Dialled(ctx, "home", "0300 123 4567"); d.Number != bank {
		t.Errorf("Dialled number %q, want %q", d.Number, bank)
	}
}

func TestDialledFeatureCodes(t *testing.T) {
	sc := dialScreener(t)
	ctx := context.Background()
	for in, want := range map[string]Feature{"*99": FeatureLineCheck, "sip:*99@h": FeatureLineCheck, "sip:%2A99@h": FeatureLineCheck,
		"*57": FeatureReport, "*9": NoFeature, "*990": NoFeature, "99": NoFeature} {
		if d := sc.Dialled(ctx, "home", in); d.Feature != want {
			t.Errorf("Dialled(%q).Feature = %v, want %v", in, d.Feature, want)
		}
	}
	off := newScreener(t, openStore(t), Config{Features: Features{LineCheck: "-", Report: "#1"}})
	if d := off.Dialled(ctx, "home", "*99"); d.Feature != NoFeature {
		t.Errorf("disabled line check still a feature: %+v", d)
	}
	if d := off.Dialled(ctx, "home", "#1"); d.Feature != FeatureReport {
		t.Errorf("report code #1: %+v", d)
	}
	for _, bad := range []Features{{LineCheck: "*9a"}, {Report: "57 "}, {LineCheck: "*5", Report: "*5"}} {
		if _, err := New(openStore(t), Config{Features: bad}); err == nil || !strings.Contains(err.Error(), "screening.features") {
			t.Errorf("features %+v: err %v; want a screening.features error", bad, err)
		}
	}
}

// TestProtectedCallerIsSpoofedPerLine: the list D4 uses is the list the
// spoofing rule uses.
func TestProtectedCallerIsSpoofedPerLine(t *testing.T) {
	sc := dialScreener(t)
	ctx := context.Background()
	want(t, sc.Screen(ctx, Call{Line: "home", From: "0300 123 4567", DryRun: true}), Block, ReasonProtectedSpoofed)
	want(t, sc.Screen(ctx, Call{Line: "office", From: "0300 123 4567", DryRun: true}), Allow)
	want(t, sc.Screen(ctx, Call{Line: "office", From: careHelp, DryRun: true}), Block, ReasonProtectedSpoofed)
	want(t, sc.Screen(ctx, Call{Line: "office", From: "159", DryRun: true}), Block, ReasonInvalid, ReasonUKLength, ReasonProtectedSpoofed)
}

func TestLineCalled(t *testing.T) {
	sc := dialScreener(t)
	for in, want := range map[string]string{
		"+442079460123": "home", "02079460123": "home", "020 7946 0123": "home", "sip:02079460123@cleanline": "home",
		"landline": "home", "LandLine": "home", "home": "home", "tel:+44-20-7946-0124": "office", "office": "office",
	} {
		if got, ok := sc.LineCalled(in); !ok || got != want {
			t.Errorf("LineCalled(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"+44207946012", "+4420794601234", "nobody", "", "sip:@h"} {
		if got, ok := sc.LineCalled(in); ok {
			t.Errorf("LineCalled(%q) = %q; want no line", in, got)
		}
	}
	if got := sc.Lines(); len(got) != 2 || got[0] != "home" || got[1] != "office" {
		t.Errorf("Lines() = %v", got)
	}
}

func TestLineConfigErrors(t *testing.T) {
	five := 5 * time.Minute
	neg := -time.Second
	for _, c := range []struct {
		lines []Line
		want  string
	}{
		{[]Line{{Name: "a", Numbers: []string{"020 7946 0123"}}, {Name: "b", Numbers: []string{"+442079460123"}, Key: "sip.lines[1]"}},
			`sip.lines[1].numbers: "+442079460123" also rings line "a"`},
		{[]Line{{Name: "a"}, {Name: "a"}}, `lines[1].name: "a" used twice`},
		{[]Line{{Name: ""}}, `lines[0].name: empty`},
		{[]Line{{Name: "a", Policy: LinePolicy{Cooldown: &neg}, Key: "sip.lines[0]"}}, "sip.lines[0].policy: bad screening policy: cooldown"},
		{[]Line{{Name: "a", Policy: LinePolicy{Protected: []string{"bank"}}, Key: "sip.lines[0]"}}, "sip.lines[0].policy.protected[0]"},
	} {
		_, err := New(openStore(t), Config{Lines: c.lines})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("lines %+v: err %v; want it to say %q", c.lines, err, c.want)
		}
	}
	// A line's policy changes only the keys it sets.
	sc := newScreener(t, openStore(t), Config{Lines: []Line{{Name: "a", Policy: LinePolicy{Cooldown: &five}}}})
	p := sc.Policy("a")
	if p.Cooldown != five || p.Withheld != DefaultPolicy().Withheld || p.StoreDeadline != DefaultPolicy().StoreDeadline {
		t.Errorf("policy of a = %+v", p)
	}
	if _, err := New(openStore(t), Config{Protected: []string{"x"}}); !errors.Is(err, ErrNotANumber) || !strings.Contains(err.Error(), "screening.protected[0]") {
		t.Errorf("bad screening.protected: %v", err)
	}
}
