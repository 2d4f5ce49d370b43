package screening

import (
	"context"
	"slices"
	"testing"
)

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

// dialPolicyScreener has a line for each policy the tests compare: the
// default, one that allows international calls, one that allows premium
// rate, one that refuses shared cost too, and one that allows everything.
func dialPolicyScreener(t *testing.T) *Screener {
	t.Helper()
	st := openStore(t)
	// The bank's line abroad, protected: protected wins over class.
	if err := st.Protect(context.Background(), "+12025550199"); err != nil {
		t.Fatal(err)
	}
	// Home's son abroad and its 070 relay, trusted contacts of home only.
	for _, n := range []string{"+14165550123", "+447012345679"} {
		if err := st.Trust(context.Background(), "home", n); err != nil {
			t.Fatal(err)
		}
	}
	all := &LineDial{PremiumRate: yes(), Satellite: yes(), Personal: yes(), SharedCost: yes(), International: yes(), ServiceCode: yes()}
	return newScreener(t, st, Config{
		Protected: []string{"020 7946 0555"},
		Lines: []Line{
			{Name: "home", Numbers: []string{"+442079460123"}, Policy: LinePolicy{Protected: []string{"0300 123 4567"}}},
			{Name: "intl", Policy: LinePolicy{Dial: &LineDial{International: yes()}}},
			{Name: "premium", Policy: LinePolicy{Dial: &LineDial{PremiumRate: yes()}}},
			{Name: "strict", Policy: LinePolicy{Dial: &LineDial{SharedCost: no()}}},
			{Name: "open", Policy: LinePolicy{Dial: all}},
		},
	})
}

// TestDialledClassesInEveryForm: each class of number, in every form a
// phone sends it, is classified the same, and each line's policy bars what
// it does not allow. Emergency and protected numbers are never barred.
func TestDialledClassesInEveryForm(t *testing.T) {
	sc := dialPolicyScreener(t)
	ctx := context.Background()
	const (
		prem  = DialPremiumRate
		intl  = DialInternational
		sat   = DialSatellite
		pers  = DialPersonal
		share = DialSharedCost
		svc   = DialServiceCode
	)
	cases := []struct {
		what    string
		forms   []string
		classes []DialClass
		// barred per line; a line not named bars nothing
		barred map[string]DialClass
	}{
		{"09 premium rate", []string{"09012345678", "0901 234 5678", "+449012345678", "+44 901 234 5678", "00449012345678", "0044 901-234-5678",
			"tel:+44-901-234-5678", "tel:09012345678", "sip:09012345678@cleanline;user=phone", "sip:0901%20234%205678@cleanline", "141 0901 234 5678", "1470 09012345678"},
			[]DialClass{prem}, map[string]DialClass{"home": prem, "intl": prem, "strict": prem}},
		{"09, unallocated", []string{"0901234567", "+44901234567"}, []DialClass{prem}, map[string]DialClass{"home": prem, "intl": prem, "strict": prem}},
		{"0871", []string{"0871 234 5678", "+448712345678", "00448712345678"}, []DialClass{prem}, map[string]DialClass{"home": prem, "intl": prem, "strict": prem}},
		{"0872", []string{"08722345678", "+44 872 234 5678"}, []DialClass{prem}, map[string]DialClass{"home": prem, "intl": prem, "strict": prem}},
		{"0873", []string{"0873 234 5678", "tel:+44-873-234-5678"}, []DialClass{prem}, map[string]DialClass{"home": prem, "intl": prem, "strict": prem}},
		{"118118", []string{"118118", "118 118", "+44118118", "0044118118", "tel:118118", "sip:118118@cleanline", "141118118"},
			[]DialClass{prem}, map[string]DialClass{"home": prem, "intl": prem, "strict": prem}},
		{"118500", []string{"118500", "+44 118 500", "0044 118500"}, []DialClass{prem}, map[string]DialClass{"home": prem, "intl": prem, "strict": prem}},
		{"+1 212", []string{"+12125550100", "+1 212 555 0100", "001 212 555 0100", "0012125550100", "+1 (212) 555-0100", "tel:+1-212-555-0100", "sip:+12125550100@cleanline;user=phone", "sip:%2B12125550100@cleanline"},
			[]DialClass{intl}, map[string]DialClass{"home": intl, "premium": intl, "strict": intl}},
		{"+1 900, premium rate abroad", []string{"+19005550100", "001 900 555 0100"}, []DialClass{prem, intl},
			map[string]DialClass{"home": prem, "intl": prem, "premium": intl, "strict": prem}},
		{"00881 satellite", []string{"00881612345678", "+881612345678", "+881 6 1234 5678", "tel:+881-612345678"}, []DialClass{sat, intl},
			map[string]DialClass{"home": sat, "intl": sat, "premium": sat, "strict": sat}},
		{"+88216 international networks", []string{"+8821612345678", "00 882 16 12345678"}, []DialClass{sat, intl},
			map[string]DialClass{"home": sat, "intl": sat, "premium": sat, "strict": sat}},
		{"+870 Inmarsat", []string{"+870773111111", "00870 773 111 111"}, []DialClass{sat, intl},
			map[string]DialClass{"home": sat, "intl": sat, "premium": sat, "strict": sat}},
		{"070 personal", []string{"07012345678", "070 1234 5678", "+447012345678", "00447012345678"}, []DialClass{pers},
			map[string]DialClass{"home": pers, "intl": pers, "premium": pers, "strict": pers}},
		{"084 shared cost", []string{"0845 234 5678", "+448452345678", "0844 234 5678"}, []DialClass{share}, map[string]DialClass{"strict": share}},
		{"0870 shared cost", []string{"0870 234 5678", "00448702345678"}, []DialClass{share}, map[string]DialClass{"strict": share}},
		{"service codes", []string{"*21*09012345678#", "#31#09012345678", "*6709012345678", "sip:%2A21%2A0901234567%23@cleanline", "*9"},
			[]DialClass{svc}, map[string]DialClass{"home": svc, "intl": svc, "premium": svc, "strict": svc}},
		{"ordinary", []string{"020 7946 0018", "+442079460018", "00442079460018", "01632 960000", "07700 900123", "0300 123 4568",
			"0800 123 4567", "0118 496 0000", "07624 123456", "+44 7781 123456", "9999", "0118118", "141", "1410"}, nil, nil},
	}
	lines := []string{"home", "intl", "premium", "strict", "open", "unconfigured"}
	for _, c := range cases {
		for _, f := range c.forms {
			for _, line := range lines {
				d := sc.Dialled(ctx, line, f)
				want := c.barred[line]
				if line == "unconfigured" {
					want = c.barred["home"] // the default policy
				}
				if !slices.Equal(d.Classes, c.classes) || d.Barred != want || d.Feature != NoFeature {
					t.Errorf("%s: Dialled(%s, %q) = %+v; want classes %v, barred %q", c.what, line, f, d, c.classes, want)
				}
				if d.Barred != "" && (d.Protected || d.Emergency) {
					t.Errorf("%s: Dialled(%s, %q) = %+v: barred yet protected", c.what, line, f, d)
				}
			}
		}
	}
	// Emergency and protected numbers: never barred, on any line, in any form.
	for _, f := range []string{"999", "+44999", "0044 999", "tel:999", "141 999", "112", "+44 112", "101", "111", "+44101",
		"020 7946 0555", "0300 123 4567", "+1 202 555 0199", "0012025550199"} {
		for _, line := range lines {
			d := sc.Dialled(ctx, line, f)
			if !d.Protected || d.Barred != "" {
				if f == "0300 123 4567" && line != "home" {
					continue // home's bank, not the others'
				}
				t.Errorf("Dialled(%s, %q) = %+v; want protected, not barred", line, f, d)
			}
		}
	}
	// A trusted contact of the line: dialable whatever its class, by that
	// line only, and not protected (D4 is not for family).
	for _, c := range []struct {
		line, dial string
		barred     DialClass
	}{
		{"home", "+1 416 555 0123", ""}, {"home", "001 416 555 0123", ""}, {"home", "07012345679", ""},
		{"strict", "+1 416 555 0123", DialInternational}, {"unconfigured", "07012345679", DialPersonal},
	} {
		d := sc.Dialled(ctx, c.line, c.dial)
		if d.Barred != c.barred || d.Protected || d.Trusted != (c.barred == "") {
			t.Errorf("trusted contact: Dialled(%s, %q) = %+v; want barred %q", c.line, c.dial, d, c.barred)
		}
	}
	for _, f := range []string{"999", "112", "141 999", "tel:+44-999"} {
		if d := sc.Dialled(ctx, "home", f); !d.Emergency || d.Number != "+44"+f[len(f)-3:] {
			t.Errorf("Dialled(home, %q) = %+v; want emergency", f, d)
		}
	}
	// What is not plainly a number is none: libphonenumber would read an
	// extension ("x") or keypad letters, the trunk perhaps not.
	for _, f := range []string{"02079460018x09012345678", "0800 FLOWERS", "0909ABC1234", "44+9012345678", "alice"} {
		if d := sc.Dialled(ctx, "open", f); d.Number != "" || len(d.Classes) > 0 || d.Feature != NoFeature {
			t.Errorf("Dialled(open, %q) = %+v; want no number", f, d)
		}
	}
	// The destination is what is classified: 141's number.
	if d := sc.Dialled(ctx, "home", "141 0901 234 5678"); d.Number != "+449012345678" {
		t.Errorf("141 prefix: number %q, want +449012345678", d.Number)
	}
}

// TestDialPolicyDefaultsAndOverrides: the default policy bars every class
// but shared cost; screening.default_policy changes every line that does
// not set the key itself; a line's dial changes only the keys it names.
func TestDialPolicyDefaultsAndOverrides(t *testing.T) {
	if d := DefaultPolicy().Dial; d != (DialPolicy{SharedCost: true}) {
		t.Errorf("default dial policy %+v; want only shared_cost allowed", d)
	}
	def := DefaultPolicy()
	def.Dial.International = true
	sc := newScreener(t, openStore(t), Config{Default: def, Lines: []Line{
		{Name: "a"},
		{Name: "b", Policy: LinePolicy{Dial: &LineDial{International: no(), PremiumRate: yes()}}},
	}})
	ctx := context.Background()
	for _, c := range []struct {
		line, dial string
		barred     DialClass
	}{
		{"a", "+12125550100", ""}, {"a", "09012345678", DialPremiumRate}, {"a", "0845 234 5678", ""},
		{"b", "+12125550100", DialInternational}, {"b", "09012345678", ""}, {"b", "0845 234 5678", ""},
		{"nosuch", "+12125550100", ""},
	} {
		if d := sc.Dialled(ctx, c.line, c.dial); d.Barred != c.barred {
			t.Errorf("Dialled(%s, %s).Barred = %q, want %q", c.line, c.dial, d.Barred, c.barred)
		}
	}
	if p := sc.Policy("b"); p.Dial != (DialPolicy{PremiumRate: true, SharedCost: true}) || p.Cooldown != DefaultPolicy().Cooldown {
		t.Errorf("policy of b = %+v", p)
	}
}

// TestDialledInAnotherRegion: international means another country code
// than the region's, and the region's own emergency numbers are emergency.
func TestDialledInAnotherRegion(t *testing.T) {
	sc := newScreener(t, openStore(t), Config{Region: "IE"})
	ctx := context.Background()
	if d := sc.Dialled(ctx, "x", "+449012345678"); !slices.Equal(d.Classes, []DialClass{DialPremiumRate, DialInternational}) || d.Barred != DialPremiumRate {
		t.Errorf("+44 9 from IE: %+v", d)
	}
	if d := sc.Dialled(ctx, "x", "01 234 5678"); len(d.Classes) != 0 || d.Barred != "" {
		t.Errorf("Dublin from IE: %+v", d)
	}
	if d := sc.Dialled(ctx, "x", "112"); !d.Emergency || d.Barred != "" {
		t.Errorf("112 in IE: %+v", d)
	}
	// 141 is the UK's prefix only.
	if d := sc.Dialled(ctx, "x", "141 999"); d.Emergency {
		t.Errorf("141 999 in IE: %+v", d)
	}
}
