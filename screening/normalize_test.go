package screening

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
)

func TestCallerUser(t *testing.T) {
	cases := []struct {
		in, want string
		err      error
	}{
		{"020 7946 0123", "020 7946 0123", nil},
		{"sip:+442079460123@trunk.example;user=phone", "+442079460123", nil},
		{"sips:02079460123@10.0.0.1:5061", "02079460123", nil},
		{`"Bank" <sip:+442079460123@trunk.example>;tag=abc`, "+442079460123", nil},
		{"<tel:+44-20-7946-0123;phone-context=+44>", "+44-20-7946-0123", nil},
		{"tel:+442079460123", "+442079460123", nil},
		{"sip:%2B442079460123@h", "+442079460123", nil},
		{"sip:anonymous@anonymous.invalid", "", ErrWithheld},
		{"sip:Restricted@trunk", "", ErrWithheld},
		{"unavailable", "", ErrWithheld},
		{"sip:@host", "", ErrWithheld},
		{"sip:host.example", "", ErrWithheld},
		{"", "", ErrWithheld},
		{"   ", "", ErrWithheld},
		{"<sip:x@y", "", ErrNotANumber},
	}
	for _, c := range cases {
		got, err := CallerUser(c.in)
		if !errors.Is(err, c.err) || got != c.want {
			t.Errorf("CallerUser(%q) = %q, %v; want %q, %v", c.in, got, err, c.want, c.err)
		}
	}
}

// Fixtures use Ofcom's drama ranges. libphonenumber accepts 020 7946 0xxx as a
// valid London number; 07700 900xxx and 01632 960xxx are reserved,
// unallocated ranges it rejects, so they are invalid caller IDs.
func TestNormalizerParse(t *testing.T) {
	z, err := NewNormalizer("GB", 0)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		in    string
		e164  string
		valid bool
		err   error
	}{
		{"020 7946 0123", "+442079460123", true, nil},
		{"02079460123", "+442079460123", true, nil},
		{"+44 (0)20 7946 0123", "+442079460123", true, nil},
		{"0044 20 7946 0123", "+442079460123", true, nil},
		{"+44 20 7946 0123", "+442079460123", true, nil},
		{"(020) 7946-0123", "+442079460123", true, nil},
		{"sip:+442079460123@trunk;user=phone", "+442079460123", true, nil},
		{"tel:+44-20-7946-0123", "+442079460123", true, nil},
		{"07700 900123", "+447700900123", false, nil},
		{"+44 (0)7700 900123", "+447700900123", false, nil},
		{"0044 7700 900123", "+447700900123", false, nil},
		{"01632 960123", "+441632960123", false, nil},
		{"+1 650 253 0000", "+16502530000", true, nil},
		{"00 1 650 253 0000", "+16502530000", true, nil},
		{"0800 123 456", "+44800123456", true, nil},
		{"12", "+4412", false, nil},
		{"159", "+44159", false, nil},
		{"anonymous", "", false, ErrWithheld},
		{"sip:anonymous@anonymous.invalid", "", false, ErrWithheld},
		{"abc", "", false, ErrNotANumber},
		{"+999 123", "", false, ErrNotANumber},
	}
	for _, c := range cases {
		n, err := z.Parse(c.in)
		if !errors.Is(err, c.err) {
			t.Errorf("Parse(%q) error %v, want %v", c.in, err, c.err)
			continue
		}
		if n.E164 != c.e164 || n.Valid != c.valid {
			t.Errorf("Parse(%q) = %s valid=%v, want %s valid=%v", c.in, n.E164, n.Valid, c.e164, c.valid)
		}
	}
}

func TestNormalizerCacheGivesSameAnswers(t *testing.T) {
	z, _ := NewNormalizer("GB", 4)
	uncached, _ := NewNormalizer("GB", 0)
	for i := 0; i < 3; i++ {
		for _, in := range []string{"020 7946 0123", "anonymous", "abc", "07700900123", "+16502530000", "0800 123 456"} {
			want, wantErr := uncached.parse(in)
			got, err := z.Parse(in)
			if got != want || fmt.Sprint(err) != fmt.Sprint(wantErr) {
				t.Fatalf("cached Parse(%q) = %+v %v, uncached %+v %v", in, got, err, want, wantErr)
			}
		}
	}
	if len(z.cache) > 4 {
		t.Fatalf("cache holds %d entries, bound is 4", len(z.cache))
	}
}

func TestNormalize(t *testing.T) {
	z, _ := NewNormalizer("", 0)
	if got, err := z.Normalize("020 7946 0123"); err != nil || got != "+442079460123" {
		t.Fatalf("Normalize = %q, %v", got, err)
	}
	if _, err := z.Normalize("07700 900123"); !errors.Is(err, ErrInvalidNumber) {
		t.Fatalf("Normalize(reserved range) error %v, want ErrInvalidNumber", err)
	}
	if got, err := z.NormalizeKey("159"); err != nil || got != "+44159" {
		t.Fatalf("NormalizeKey(159) = %q, %v", got, err)
	}
	if _, err := NewNormalizer("XX", 0); !errors.Is(err, ErrPolicy) {
		t.Fatalf("unknown region error %v, want ErrPolicy", err)
	}
	us, _ := NewNormalizer("us", 0)
	if got, err := us.Normalize("(650) 253-0000"); err != nil || got != "+16502530000" {
		t.Fatalf("US Normalize = %q, %v", got, err)
	}
}

func TestNormalizePrefix(t *testing.T) {
	z, _ := NewNormalizer("GB", 0)
	cases := []struct{ in, want string }{
		{"020 7946 01*", "+4420794601"},
		{"+4420794601*", "+4420794601"},
		{"+4420794601", "+4420794601"},
		{"0044 20 7946 01", "+4420794601"},
		{"+44 (0)20 7946 01*", "+4420794601"},
		{"+1650*", "+1650"},
	}
	for _, c := range cases {
		if got, err := z.NormalizePrefix(c.in); err != nil || got != c.want {
			t.Errorf("NormalizePrefix(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "*", "7946*", "+44x1*", "+1234567890123456*", "00*", "+0*"} {
		if got, err := z.NormalizePrefix(bad); !errors.Is(err, ErrNotANumber) {
			t.Errorf("NormalizePrefix(%q) = %q, %v; want ErrNotANumber", bad, got, err)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"020 7946 0123", "+44 (0)20 7946 0123", "sip:+442079460123@h;user=phone",
		"tel:+44-20-7946-0123", `"x" <sip:anonymous@a>`, "<", "sip:@", "00", "+", "(0)", "0044 7700 900123*",
		"141 0909 123 4567", "1470999", "*21*0901234567#", "00881612345678", "118118", "+1 900 555 0100", "*99"} {
		f.Add(s)
	}
	z, _ := NewNormalizer("GB", 16)
	// What a line dialled goes through the same parser, then the classes.
	sc := newScreener(f, openStore(f), Config{Lines: []Line{{Name: "home", Policy: LinePolicy{Dial: &LineDial{International: yes()}}}}})
	f.Fuzz(func(t *testing.T, s string) {
		checkDialled(t, sc.Dialled(context.Background(), "home", s), s)
		n, err := z.Parse(s)
		if err == nil && n.E164 == "" {
			t.Fatalf("Parse(%q) gave no E.164 and no error", s)
		}
		checkSameAsLibrary(t, z, s)
		if e, err := z.Normalize(s); err == nil && (e == "" || e[0] != '+') {
			t.Fatalf("Normalize(%q) = %q", s, e)
		}
		if p, err := z.NormalizePrefix(s); err == nil && (len(p) < 4 || p[0] != '+') {
			t.Fatalf("NormalizePrefix(%q) = %q", s, p)
		}
	})
}

// checkDialled holds what Dialled returns to its promises, for any input.
func checkDialled(t *testing.T, d Dialled, s string) {
	t.Helper()
	switch {
	case d.Emergency && !d.Protected:
		t.Fatalf("Dialled(%q) = %+v: emergency but not protected", s, d)
	case (d.Protected || d.Trusted) && d.Barred != "":
		t.Fatalf("Dialled(%q) = %+v: protected or trusted yet barred", s, d)
	case d.Barred != "" && !slices.Contains(d.Classes, d.Barred):
		t.Fatalf("Dialled(%q) = %+v: barred for a class it is not in", s, d)
	case d.Feature != NoFeature && (d.Number != "" || len(d.Classes) > 0):
		t.Fatalf("Dialled(%q) = %+v: a feature code with a number", s, d)
	case d.Number == "" && len(d.Classes) > 0 && !slices.Equal(d.Classes, []DialClass{DialServiceCode}):
		t.Fatalf("Dialled(%q) = %+v: classes without a number", s, d)
	case d.Number != "" && d.Number[0] != '+':
		t.Fatalf("Dialled(%q) = %+v: number not in E.164", s, d)
	}
}
