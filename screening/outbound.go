package screening

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"github.com/nyaruka/phonenumbers"

	"github.com/cleanline/cleanline/blocklist"
)

// What a line dialled: a feature code, an emergency or protected number
// (D4), or a number whose class the line's policy may bar (toll fraud
// through the line's own calls, issue 12 §2).

// Feature is a code the line dialled that cleanline answers itself.
type Feature int

const (
	NoFeature Feature = iota
	FeatureLineCheck
	FeatureReport
)

// DialClass is a class of number that costs more, or reaches further, than
// an ordinary call, and that a line's policy (dial:) may bar. Its value is
// the policy's key, the call record's and the metric's label.
type DialClass string

// The classes, in the order a refusal names them: the costliest and most
// specific first, so that +1 900 is refused as premium_rate and +881 as
// satellite, not as international.
const (
	// DialPremiumRate: UK 09, 0871-0873 and 118 directory enquiries
	// (Ofcom), and any number libphonenumber types PREMIUM_RATE.
	DialPremiumRate DialClass = "premium_rate"
	// DialSatellite: satellite phones and the other international
	// networks, libphonenumber's non-geographic country codes (+870, +881,
	// +882, +883, +888, +800, +808, +979): the classic destinations of
	// international revenue-share fraud, priced at pounds a minute.
	// Allowing international does not allow them.
	DialSatellite DialClass = "satellite"
	// DialPersonal: UK 070 personal numbers and 076 pagers (libphonenumber's
	// PERSONAL_NUMBER and PAGER elsewhere): priced like premium rate while
	// looking like a mobile number, which is what scams use them for.
	DialPersonal DialClass = "personal"
	// DialSharedCost: UK 084 and 0870 (a service charge of a few pence a
	// minute, not premium rate, whatever libphonenumber says of them) and
	// libphonenumber's SHARED_COST elsewhere. Allowed by default: GP
	// surgeries, banks and utilities still answer on them.
	DialSharedCost DialClass = "shared_cost"
	// DialInternational: a country code other than the region's (+1, 0033
	// ...). For GB, +44 includes Jersey, Guernsey and the Isle of Man.
	DialInternational DialClass = "international"
	// DialServiceCode: text with * or # that is no feature code: a
	// provider's service code, such as call divert (*21*number#), which
	// could forward the line to any number.
	DialServiceCode DialClass = "service_code"
)

var dialClassOrder = []DialClass{DialPremiumRate, DialSatellite, DialPersonal, DialSharedCost, DialInternational, DialServiceCode}

// DialPolicy says which classes of number a line may dial. Every other
// number (geographic, mobile, freephone, 03...) may always be dialled, and
// so may emergency and protected numbers, whatever the policy says.
type DialPolicy struct {
	PremiumRate   bool `yaml:"premium_rate" json:"premium_rate"`
	Satellite     bool `yaml:"satellite" json:"satellite"`
	Personal      bool `yaml:"personal" json:"personal"`
	SharedCost    bool `yaml:"shared_cost" json:"shared_cost"`
	International bool `yaml:"international" json:"international"`
	ServiceCode   bool `yaml:"service_code" json:"service_code"`
}

// defaultDialPolicy suits a protected line: only shared cost is allowed.
func defaultDialPolicy() DialPolicy { return DialPolicy{SharedCost: true} }

func (p DialPolicy) allows(c DialClass) bool {
	switch c {
	case DialPremiumRate:
		return p.PremiumRate
	case DialSatellite:
		return p.Satellite
	case DialPersonal:
		return p.Personal
	case DialSharedCost:
		return p.SharedCost
	case DialInternational:
		return p.International
	case DialServiceCode:
		return p.ServiceCode
	}
	return false
}

// barred is the first of classes (in dialClassOrder) p refuses, "" if none.
func (p DialPolicy) barred(classes []DialClass) DialClass {
	for _, c := range classes {
		if !p.allows(c) {
			return c
		}
	}
	return ""
}

// LineDial is a line's dial: the classes it changes of the default policy's.
type LineDial struct {
	PremiumRate   *bool `yaml:"premium_rate"`
	Satellite     *bool `yaml:"satellite"`
	Personal      *bool `yaml:"personal"`
	SharedCost    *bool `yaml:"shared_cost"`
	International *bool `yaml:"international"`
	ServiceCode   *bool `yaml:"service_code"`
}

func (o *LineDial) over(p *DialPolicy) {
	if o == nil {
		return
	}
	set(&p.PremiumRate, o.PremiumRate)
	set(&p.Satellite, o.Satellite)
	set(&p.Personal, o.Personal)
	set(&p.SharedCost, o.SharedCost)
	set(&p.International, o.International)
	set(&p.ServiceCode, o.ServiceCode)
}

// Dialled is what a number a line dialled is.
type Dialled struct {
	// Feature is set when the line dialled a feature code; nothing else is.
	Feature Feature
	// Number is the dialled number in E.164, or "" when it is no number.
	Number string
	// Emergency: an emergency number of the region (999, 112), which is
	// always protected.
	Emergency bool
	// Protected: dialling it must first end every other call of the line
	// (D4): an emergency or police number, screening.protected, the line's
	// own protected numbers, or a number the store marks protected.
	Protected bool
	// Trusted: a trusted contact of the line (the operator put the
	// person's family there), which it may dial whatever its class.
	Trusted bool
	// Classes are the classes of the number (dialClassOrder), none for an
	// ordinary one.
	Classes []DialClass
	// Barred is the first of Classes the line's policy refuses, "" when the
	// line may dial it: the call must not reach the trunk. Never set for an
	// emergency, protected or trusted number.
	Barred DialClass
}

// Dialled classifies what line dialled: a feature code, an emergency or
// protected number, or any other number, with its classes and whether the
// line's policy bars it. raw is the Request-URI's user part or the URI
// itself; any national, international, 00 or separated form is the same
// number. A store that does not answer in time leaves only the configured
// protected numbers known (and no trusted contact).
func (sc *Screener) Dialled(ctx context.Context, line, raw string) Dialled {
	user, err := CallerUser(raw)
	if err != nil {
		return Dialled{}
	}
	code := strings.Join(strings.Fields(user), "")
	switch {
	case sc.features.LineCheck != "-" && code == sc.features.LineCheck:
		return Dialled{Feature: FeatureLineCheck}
	case sc.features.Report != "-" && code == sc.features.Report:
		return Dialled{Feature: FeatureReport}
	}
	r := sc.rules(line)
	if strings.ContainsAny(code, "*#") {
		// libphonenumber would read "*21*0909...#" as a number; the trunk
		// would read it as a service code. What the trunk does decides.
		d := Dialled{Classes: []DialClass{DialServiceCode}}
		d.Barred = r.policy.Dial.barred(d.Classes)
		return d
	}
	if strings.Trim(code, "0123456789+-.()") != "" || strings.LastIndexByte(code, '+') > 0 {
		// Letters and the like: libphonenumber reads "x" as an extension
		// and letters as keypad digits, and a trunk may not; what is
		// classified must be what the trunk would dial.
		return Dialled{}
	}
	n, err := sc.norm.Parse(sc.norm.withoutCLIPrefix(user))
	if err != nil || n.E164 == "" {
		return Dialled{}
	}
	d := Dialled{Number: n.E164, Classes: sc.norm.dialClasses(n)}
	if cc := "+" + strconv.Itoa(phonenumbers.GetCountryCodeForRegion(sc.norm.region)); strings.HasPrefix(n.E164, cc) {
		// The region's emergency short codes, from libphonenumber's metadata.
		d.Emergency = phonenumbers.IsEmergencyNumber(n.E164[len(cc):], sc.norm.region)
	}
	d.Protected = d.Emergency || r.protected[n.E164]
	if !d.Protected {
		lctx, cancel := context.WithTimeout(ctx, r.policy.StoreDeadline)
		f, err := sc.store.Lookup(lctx, blocklist.Query{Caller: n.E164, Line: line, Now: sc.now()})
		cancel()
		d.Protected = err == nil && f.Protected
		d.Trusted = err == nil && f.Trusted
	}
	if !d.Protected && !d.Trusted {
		d.Barred = r.policy.Dial.barred(d.Classes)
	}
	return d
}

// dialClasses are the classes of a dialled number, in dialClassOrder:
// Ofcom's ranges for a UK number where libphonenumber's types are not
// specific, libphonenumber's types otherwise.
func (z *Normalizer) dialClasses(n Number) []DialClass {
	var cls []DialClass
	add := func(c DialClass) {
		if !slices.Contains(cls, c) {
			cls = append(cls, c)
		}
	}
	c, ok := DialClass(""), false
	if n.CountryCode == ukCountryCode {
		c, ok = ukDialClass(strings.TrimPrefix(n.E164, "+44"))
	}
	if !ok {
		switch n.Type {
		case phonenumbers.PREMIUM_RATE:
			c = DialPremiumRate
		case phonenumbers.SHARED_COST:
			c = DialSharedCost
		case phonenumbers.PERSONAL_NUMBER, phonenumbers.PAGER:
			c = DialPersonal
		}
	}
	if c != "" {
		add(c)
	}
	if n.Region == nonGeoRegion {
		add(DialSatellite)
	}
	if int(n.CountryCode) != phonenumbers.GetCountryCodeForRegion(z.region) {
		add(DialInternational)
	}
	slices.SortFunc(cls, func(a, b DialClass) int {
		return slices.Index(dialClassOrder, a) - slices.Index(dialClassOrder, b)
	})
	return cls
}

// withoutCLIPrefix drops the UK's per-call CLI prefixes, 141 (withhold)
// and 1470 (present), from a number dialled in GB: the network dials what
// follows, so "141 0909..." is a premium-rate call and "141 999" an
// emergency one. Other text is returned as it is.
func (z *Normalizer) withoutCLIPrefix(user string) string {
	if z.region != "GB" || strings.Trim(user, "0123456789 -.()") != "" {
		return user
	}
	d := onlyDigits(user)
	for _, p := range []string{"1470", "141"} {
		// At least a short code must follow: 141 alone is no prefix.
		if strings.HasPrefix(d, p) && len(d) >= len(p)+3 {
			return d[len(p):]
		}
	}
	return user
}
