package screening

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// libraryParse is parse written the straightforward way, one library call
// per field: the reference the faster parse must agree with exactly.
func libraryParse(raw, region string) (Number, error) {
	user, err := CallerUser(raw)
	if err != nil {
		return Number{}, err
	}
	p, err := phonenumbers.Parse(user, region)
	if err != nil {
		return Number{}, fmt.Errorf("%w: %q: %v", ErrNotANumber, raw, err)
	}
	n := Number{
		E164:        phonenumbers.Format(p, phonenumbers.E164),
		Valid:       phonenumbers.IsValidNumber(p),
		CountryCode: p.GetCountryCode(),
		Region:      phonenumbers.GetRegionCodeForNumber(p),
		Type:        phonenumbers.GetNumberType(p),
	}
	nsn := phonenumbers.GetNationalSignificantNumber(p)
	n.National = nsn
	if prefix := phonenumbers.GetNddPrefixForRegion(phonenumbers.GetRegionCodeForCountryCode(int(p.GetCountryCode())), true); prefix != "" {
		n.National = prefix + nsn
	}
	return n, nil
}

func checkSameAsLibrary(t *testing.T, z *Normalizer, in string) {
	t.Helper()
	want, wantErr := libraryParse(in, z.region)
	got, err := z.parse(in)
	if got != want || fmt.Sprint(err) != fmt.Sprint(wantErr) {
		t.Errorf("parse(%q) in %s = %+v, %v\nlibrary gives   %+v, %v", in, z.region, got, err, want, wantErr)
	}
}

// TestParseMatchesLibrary pins that parse, which works out region, type and
// validity in one pass (see typer), answers exactly as the library's
// IsValidNumber, GetRegionCodeForNumber and GetNumberType do.
func TestParseMatchesLibrary(t *testing.T) {
	gb, _ := NewNormalizer("GB", 0)
	us, _ := NewNormalizer("US", 0)
	cases := []string{
		// UK geographic, mobile, drama ranges, non-geographic.
		"020 7946 0123", "+44 (0)20 7946 0123", "0161 496 0000", "0131 496 0000", "01632 960123",
		"07700 900123", "07400 123456", "07911 123456", "+447624123456", "07624 123456",
		"0800 123 456", "0800 123 4567", "0808 157 0192", "0300 123 4567", "0345 123 4567",
		"0845 123 4567", "0870 123 4567", "0500 123456", "056 1234 5678", "070 1234 5678",
		"076 2412 3456", "055 1234 5678",
		// Premium rate and the 09 range.
		"0909 123 4567", "0906 123 4567", "0911 123 4567", "0871 123 4567", "0983 123 4567", "09",
		// Short codes and other too-short or too-long numbers.
		"999", "112", "159", "100", "118 118", "12", "123", "02079460123456789", "+4412",
		// Crown dependencies: Guernsey, Isle of Man, Jersey share +44.
		"+441481 123456", "01481 256789", "+447781 123456", "+441624 612345", "01624 612345",
		"+447624 312345", "+441534 612345", "01534 612345", "+447797 712345", "+447700 312345",
		"+441481 99", "+441624 1", "+44 1534 000000",
		// NANP: US, Canada, Caribbean, toll free, invalid.
		"+1 650 253 0000", "+1 212 555 0100", "+1 416 555 0199", "+1 604 555 0123", "+1 800 555 0100",
		"+1 876 555 0123", "+1 242 357 1234", "+1 268 464 1234", "+1 000 000 0000", "+1 555 555 5555",
		"001 650 253 0000", "(650) 253-0000", "650 253 0000",
		// International, incl. non-geographic codes and Italian leading zeros.
		"+33 1 23 45 67 89", "+33 6 12 34 56 78", "+49 30 123456", "+49 1512 3456789", "+39 06 1234 5678",
		"+39 312 345 6789", "+7 495 123 4567", "+7 701 123 4567", "+61 2 9374 4000", "+81 3 1234 5678",
		"+86 10 1234 5678", "+91 98765 43210", "+353 1 234 5678", "+800 1234 5678", "+882 1234 5678",
		"+870 773 111 632", "+979 1234 5678", "+62 21 1234567", "+262 269 12 34 56", "+590 590 12 34 56",
		"+599 9 123 4567", "+358 9 1234567", "+47 22 12 34 56", "+44 20 7946 0123 ext. 12",
		// Caller ID wrappers and things that are not numbers.
		"sip:+442079460123@trunk;user=phone", "tel:+44-20-7946-0123", `"x" <sip:07700900123@h>`,
		"anonymous", "abc", "+999 123", "+", "00", "0", "1-800-FLOWERS", "+44 0 20 7946 0123",
	}
	for _, z := range []*Normalizer{gb, us} {
		for _, in := range cases {
			checkSameAsLibrary(t, z, in)
		}
	}
	// The library's own example numbers for every region and type, and the
	// same numbers one digit shorter and with the last digit changed, reach
	// every region's metadata and both the valid and the invalid paths.
	types := []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE,
		phonenumbers.TOLL_FREE, phonenumbers.PREMIUM_RATE, phonenumbers.SHARED_COST, phonenumbers.VOIP,
		phonenumbers.PERSONAL_NUMBER, phonenumbers.PAGER, phonenumbers.UAN, phonenumbers.VOICEMAIL}
	regions := make([]string, 0, 256)
	for r := range phonenumbers.GetSupportedRegions() {
		regions = append(regions, r)
	}
	slices.Sort(regions)
	examples := 0
	for _, r := range regions {
		for _, ty := range types {
			p := phonenumbers.GetExampleNumberForType(r, ty)
			if p == nil {
				continue
			}
			e := phonenumbers.Format(p, phonenumbers.E164)
			last := e[len(e)-1]
			for _, in := range []string{e, e[:len(e)-1], e[:len(e)-1] + string('0'+(last-'0'+5)%10)} {
				checkSameAsLibrary(t, gb, in)
			}
			examples++
		}
	}
	for cc := range phonenumbers.GetSupportedGlobalNetworkCallingCodes() {
		if p := phonenumbers.GetExampleNumberForNonGeoEntity(cc); p != nil {
			checkSameAsLibrary(t, gb, phonenumbers.Format(p, phonenumbers.E164))
			examples++
		}
	}
	if examples < 500 {
		t.Fatalf("only %d example numbers: the sweep is not reaching the metadata", examples)
	}
	// Random digits behind the shared codes, where the region walk matters.
	rng := rand.New(rand.NewPCG(5, 6))
	for range 3000 {
		prefix := []string{"+44", "+441", "+447", "+1", "+7", "+262", "+590", "+599", "0", "07", "09"}[rng.IntN(11)]
		in := prefix + fmt.Sprint(rng.Uint64N(10_000_000_000_000))[:3+rng.IntN(8)]
		checkSameAsLibrary(t, gb, in)
	}
}

// TestTyperCompilesAllRegions compiles every region's patterns, so the
// MustCompile in compileRegion can never fire on the embedded metadata.
func TestTyperCompilesAllRegions(t *testing.T) {
	z, _ := NewNormalizer("GB", 0)
	for r, m := range z.typer.regions {
		if p := z.typer.patterns(m); p.countryCode != int32(phonenumbers.GetCountryCodeForRegion(r)) {
			t.Errorf("%s: country code %d, library says %d", r, p.countryCode, phonenumbers.GetCountryCodeForRegion(r))
		}
	}
	for _, m := range z.typer.nonGeo {
		z.typer.patterns(m)
	}
	if len(z.typer.regions) < 200 || len(z.typer.nonGeo) < 5 {
		t.Fatalf("%d regions, %d non-geographic: metadata not loaded", len(z.typer.regions), len(z.typer.nonGeo))
	}
}
