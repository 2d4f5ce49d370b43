package screening

import (
	"fmt"
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
// about 25 µs, more than the rest of a screening, and repeat callers are the
// common case, so results are kept in a bounded cache.
type Normalizer struct {
	region string

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
	return &Normalizer{region: region, cache: make(map[string]normResult), max: cacheSize}, nil
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
	n := Number{
		E164:        phonenumbers.Format(p, phonenumbers.E164),
		Valid:       phonenumbers.IsValidNumber(p),
		CountryCode: p.GetCountryCode(),
		Region:      phonenumbers.GetRegionCodeForNumber(p),
		Type:        phonenumbers.GetNumberType(p),
	}
	n.National = nationalDigits(p)
	return n, nil
}

// nationalDigits is the number as dialled within its country, digits only,
// with the national trunk prefix ("0" in the UK).
func nationalDigits(p *phonenumbers.PhoneNumber) string {
	nsn := phonenumbers.GetNationalSignificantNumber(p)
	region := phonenumbers.GetRegionCodeForCountryCode(int(p.GetCountryCode()))
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
