package screening

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// Number is a caller ID after normalisation.
type Number struct {
	// E164 is "+<country><national>"; set whenever the text parsed, valid or not,
	// so that invalid and short numbers (159, 999) still have a stable key.
	E164 string
	// Valid is libphonenumber's IsValidNumber: allocated and dialable.
	Valid bool
	// National is the national form digits (with trunk prefix): "02079460123".
	National string
	// Region is the ISO region the number belongs to ("GB"), "" when unknown.
	Region string
	// Type is libphonenumber's number type (fixed line, mobile, premium rate...).
	Type phonenumbers.PhoneNumberType
	// CountryCode is the E.164 country calling code (44).
	CountryCode int32
}

// Normalizer turns caller IDs into E.164 with libphonenumber. Parsing costs
// about 15 µs, more than the rest of a screening, and repeat callers are
// common, so results are kept in a bounded cache.
type Normalizer struct {
	region string
	typer  *typer

	mu    sync.Mutex
	cache map[string]normResult
	max   int
}

type normResult struct {
	n   Number
	err error
}

// DefaultRegion is the region national numbers are read in when none is configured.
const DefaultRegion = "GB"

// NewNormalizer reads national numbers as numbers of region (ISO 3166 code,
// "GB" when empty) and caches up to cacheSize results (0 disables the cache).
func NewNormalizer(region string, cacheSize int) (*Normalizer, error) {
	if region == "" {
		region = DefaultRegion
	}
	region = strings.ToUpper(region)
	if phonenumbers.GetCountryCodeForRegion(region) == 0 {
		return nil, fmt.Errorf("%w: unknown region %q (want an ISO 3166 code such as GB)", ErrPolicy, region)
	}
	t, err := newTyper()
	if err != nil {
		return nil, err
	}
	return &Normalizer{region: region, typer: t, cache: make(map[string]normResult), max: cacheSize}, nil
}

// Region is the region national numbers are read in.
func (z *Normalizer) Region() string { return z.region }

// Parse normalises a caller ID (any form CallerUser accepts). It returns
// ErrWithheld for withheld IDs and ErrNotANumber for text that is no number.
// An unallocated or non-dialable number is returned with Valid false and no
// error: it is a screening fact (cli.invalid), not a failure.
func (z *Normalizer) Parse(raw string) (Number, error) {
	if z.max > 0 {
		z.mu.Lock()
		r, ok := z.cache[raw]
		z.mu.Unlock()
		if ok {
			return r.n, r.err
		}
	}
	n, err := z.parse(raw)
	if z.max > 0 {
		z.mu.Lock()
		if len(z.cache) >= z.max {
			// Drop an arbitrary half: cheap, bounded, and repeat callers come back.
			i := 0
			for k := range z.cache {
				if i >= z.max/2 {
					break
				}
				delete(z.cache, k)
				i++
			}
		}
		z.cache[raw] = normResult{n, err}
		z.mu.Unlock()
	}
	return n, err
}

func (z *Normalizer) parse(raw string) (Number, error) {
	user, err := CallerUser(raw)
	if err != nil {
		return Number{}, err
	}
	// Visual separators are legal in tel: URIs and typed numbers (RFC 3966
	// §5.1.1); libphonenumber copes with most, "(0)" included.
	p, err := phonenumbers.Parse(user, z.region)
	if err != nil {
		return Number{}, fmt.Errorf("%w: %q: %v", ErrNotANumber, raw, err)
	}
	nsn := phonenumbers.GetNationalSignificantNumber(p)
	cc := p.GetCountryCode()
	// What phonenumbers.Format(p, E164) builds: Parse never keeps raw input,
	// so Format's raw-input shortcut cannot apply.
	n := Number{
		E164:        "+" + strconv.Itoa(int(cc)) + nsn,
		CountryCode: cc,
		National:    nationalDigits(cc, nsn),
	}
	n.Region, n.Type, n.Valid = z.typer.classify(cc, nsn)
	return n, nil
}

// nationalDigits is the number as dialled within its country, digits only,
// with the national trunk prefix ("0" in the UK).
func nationalDigits(cc int32, nsn string) string {
	region := phonenumbers.GetRegionCodeForCountryCode(int(cc))
	if prefix := phonenumbers.GetNddPrefixForRegion(region, true); prefix != "" {
		return prefix + nsn
	}
	return nsn
}

// Normalize returns the E.164 form of a number an operator typed or a feed
// listed, and refuses numbers that are not valid and dialable: that is what
// blocklist entries and trusted contacts must be.
func (z *Normalizer) Normalize(raw string) (string, error) {
	n, err := z.Parse(raw)
	if err != nil {
		return "", err
	}
	if !n.Valid {
		return "", fmt.Errorf("%w: %q is not an allocated, dialable number in %s", ErrInvalidNumber, raw, z.describeRegion(n))
	}
	return n.E164, nil
}

// NormalizeKey returns the E.164 key of any parseable number, valid or not.
// Protected numbers use it: short codes such as 159 or 999 are never valid
// caller IDs, which is exactly why a call "from" one is spoofed.
func (z *Normalizer) NormalizeKey(raw string) (string, error) {
	n, err := z.Parse(raw)
	if err != nil {
		return "", err
	}
	return n.E164, nil
}

// NormalizePrefix turns a range such as "020 7946 01", "+4420794601" or
// "0044 20 7946 01" (with or without a trailing '*') into an E.164 prefix.
// libphonenumber cannot parse partial numbers, so only the prefix forms are
// handled here: international ("+", "00") and national (the region's trunk prefix).
func (z *Normalizer) NormalizePrefix(raw string) (string, error) {
	s := strings.TrimSuffix(strings.TrimSpace(raw), "*")
	var digits strings.Builder
	plus := false
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits.WriteRune(r)
		case r == '+' && i == 0:
			plus = true
		case r == ' ' || r == '-' || r == '.' || r == '(' || r == ')':
		default:
			return "", fmt.Errorf("%w: range %q: unexpected %q", ErrNotANumber, raw, r)
		}
	}
	d := digits.String()
	// "+44 (0)20..." style: drop the national prefix written in brackets.
	if i := strings.Index(s, "(0)"); plus && i >= 0 {
		d = onlyDigits(s[:i]) + onlyDigits(s[i+3:])
	}
	cc := phonenumbers.GetCountryCodeForRegion(z.region)
	ndd := phonenumbers.GetNddPrefixForRegion(z.region, true)
	idd := "00"
	switch {
	case plus:
	case strings.HasPrefix(d, idd):
		d = d[len(idd):]
	case ndd != "" && strings.HasPrefix(d, ndd):
		d = fmt.Sprintf("%d%s", cc, d[len(ndd):])
	default:
		return "", fmt.Errorf("%w: range %q: start it with +, 00 or %s", ErrNotANumber, raw, ndd)
	}
	// E.164 §6.1: at most 15 digits; a useful range has a country code and more.
	if len(d) < 3 || len(d) > 15 || d[0] == '0' {
		return "", fmt.Errorf("%w: range %q: want 3 to 15 digits after the country code's '+'", ErrNotANumber, raw)
	}
	return "+" + d, nil
}

func onlyDigits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (z *Normalizer) describeRegion(n Number) string {
	if n.Region != "" {
		return n.Region
	}
	return fmt.Sprintf("country code +%d", n.CountryCode)
}

// typer gives what phonenumbers.GetRegionCodeForNumber, GetNumberType and
// IsValidNumber give, in one pass. Each of those library calls re-derives the
// region, which for +44 and +1 already means classifying the number against
// whole regions, and every pattern test there concatenates
// "^(?:"+pattern+")$", looks it up in a global mutex-guarded regexp cache and
// matches it twice. Together that was most of a new caller's Parse. Here a
// region's patterns are compiled once, on first use, and the region walk's
// own classification is the type. TestParseMatchesLibrary and FuzzNormalize
// pin the results against the library calls.
type typer struct {
	// regions and nonGeo are read-only after newTyper; they hold the
	// library's own *PhoneMetadata values (MetadataCollection is what it
	// loaded at init).
	regions map[string]*phonenumbers.PhoneMetadata
	nonGeo  map[int32]*phonenumbers.PhoneMetadata
	// compiled maps *PhoneMetadata to *regionPatterns.
	compiled sync.Map
}

func newTyper() (*typer, error) {
	coll, err := phonenumbers.MetadataCollection()
	if err != nil {
		return nil, fmt.Errorf("libphonenumber metadata: %w", err)
	}
	t := &typer{
		regions: make(map[string]*phonenumbers.PhoneMetadata),
		nonGeo:  make(map[int32]*phonenumbers.PhoneMetadata),
	}
	for _, m := range coll.GetMetadata() {
		if m.GetId() == nonGeoRegion {
			t.nonGeo[m.GetCountryCode()] = m
		} else {
			t.regions[m.GetId()] = m
		}
	}
	return t, nil
}

// nonGeoRegion is libphonenumber's region for non-geographic country codes (+800, +882...).
const nonGeoRegion = "001"

// classify mirrors GetRegionCodeForNumber, then GetNumberType's
// getNumberTypeHelper, then IsValidNumberForRegion's country check.
func (t *typer) classify(cc int32, nsn string) (region string, typ phonenumbers.PhoneNumberType, valid bool) {
	var rp *regionPatterns
	switch regions := phonenumbers.GetRegionCodesForCountryCode(int(cc)); len(regions) {
	case 0:
		return "", phonenumbers.UNKNOWN, false
	case 1:
		// The library takes a country code's only region unchecked.
		region = regions[0]
		m := t.regions[region]
		if region == nonGeoRegion {
			m = t.nonGeo[cc]
		}
		if m == nil {
			return region, phonenumbers.UNKNOWN, false
		}
		rp = t.patterns(m)
		typ = rp.numberType(nsn)
	default:
		// The first region whose leading digits match or, lacking those,
		// that the number is valid in.
		for _, r := range regions {
			m := t.regions[r]
			if m == nil {
				continue
			}
			p := t.patterns(m)
			if p.leading != nil {
				if p.leading.MatchString(nsn) {
					region, rp, typ = r, p, p.numberType(nsn)
					break
				}
			} else if ty := p.numberType(nsn); ty != phonenumbers.UNKNOWN {
				region, rp, typ = r, p, ty
				break
			}
		}
		if rp == nil {
			return "", phonenumbers.UNKNOWN, false
		}
	}
	// IsValidNumberForRegion also wants the region's own country code.
	valid = typ != phonenumbers.UNKNOWN && (region == nonGeoRegion || rp.countryCode == cc)
	return region, typ, valid
}

func (t *typer) patterns(m *phonenumbers.PhoneMetadata) *regionPatterns {
	if p, ok := t.compiled.Load(m); ok {
		return p.(*regionPatterns)
	}
	p, _ := t.compiled.LoadOrStore(m, compileRegion(m))
	return p.(*regionPatterns)
}

// regionPatterns is one region's metadata with its patterns compiled.
type regionPatterns struct {
	countryCode        int32
	sameMobileAndFixed bool
	// leading is "^(?:leading digits)", nil when the region has none.
	leading *regexp.Regexp

	general, premium, tollFree, sharedCost, voip   descPattern
	personal, pager, uan, voicemail, fixed, mobile descPattern
}

// descPattern is a PhoneNumberDesc: a number matches when its length is
// possible (any length, when none are listed) and it matches the pattern.
type descPattern struct {
	lengths []int32
	re      *regexp.Regexp // nil for an absent desc: nothing matches
}

// compileRegion compiles the same strings the library's regexFor does, with
// MustCompile as it does: the metadata is embedded, and
// TestTyperCompilesAllRegions compiles every region.
func compileRegion(m *phonenumbers.PhoneMetadata) *regionPatterns {
	desc := func(d *phonenumbers.PhoneNumberDesc) descPattern {
		if d == nil {
			return descPattern{}
		}
		return descPattern{d.PossibleLength, regexp.MustCompile("^(?:" + d.GetNationalNumberPattern() + ")$")}
	}
	p := &regionPatterns{
		countryCode:        m.GetCountryCode(),
		sameMobileAndFixed: m.GetSameMobileAndFixedLinePattern(),
		general:            desc(m.GetGeneralDesc()),
		premium:            desc(m.GetPremiumRate()),
		tollFree:           desc(m.GetTollFree()),
		sharedCost:         desc(m.GetSharedCost()),
		voip:               desc(m.GetVoip()),
		personal:           desc(m.GetPersonalNumber()),
		pager:              desc(m.GetPager()),
		uan:                desc(m.GetUan()),
		voicemail:          desc(m.GetVoicemail()),
		fixed:              desc(m.GetFixedLine()),
		mobile:             desc(m.GetMobile()),
	}
	if ld := m.GetLeadingDigits(); ld != "" {
		p.leading = regexp.MustCompile("^(?:" + ld + ")")
	}
	return p
}

func (d *descPattern) matches(nsn string) bool {
	if d.re == nil {
		return false
	}
	if len(d.lengths) > 0 && !slices.Contains(d.lengths, int32(len(nsn))) {
		return false
	}
	return d.re.MatchString(nsn)
}

// numberType is the library's getNumberTypeHelper, test for test and in its order.
func (p *regionPatterns) numberType(nsn string) phonenumbers.PhoneNumberType {
	switch {
	case !p.general.matches(nsn):
		return phonenumbers.UNKNOWN
	case p.premium.matches(nsn):
		return phonenumbers.PREMIUM_RATE
	case p.tollFree.matches(nsn):
		return phonenumbers.TOLL_FREE
	case p.sharedCost.matches(nsn):
		return phonenumbers.SHARED_COST
	case p.voip.matches(nsn):
		return phonenumbers.VOIP
	case p.personal.matches(nsn):
		return phonenumbers.PERSONAL_NUMBER
	case p.pager.matches(nsn):
		return phonenumbers.PAGER
	case p.uan.matches(nsn):
		return phonenumbers.UAN
	case p.voicemail.matches(nsn):
		return phonenumbers.VOICEMAIL
	case p.fixed.matches(nsn):
		if p.sameMobileAndFixed || p.mobile.matches(nsn) {
			return phonenumbers.FIXED_LINE_OR_MOBILE
		}
		return phonenumbers.FIXED_LINE
	case !p.sameMobileAndFixed && p.mobile.matches(nsn):
		return phonenumbers.MOBILE
	}
	return phonenumbers.UNKNOWN
}
