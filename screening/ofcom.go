package screening

import (
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// UK caller-ID rules from Ofcom's "Guidance on the provision of Calling Line
// Identification facilities and other related services" (GC C6).
const ukCountryCode = 44

// ofcomInvalid returns the specific reasons a UK number is not acceptable as
// a caller ID, or nil. Numbers of other countries are judged by validity alone.
func ofcomInvalid(n Number) []Reason {
	if n.CountryCode != ukCountryCode {
		return nil
	}
	var r []Reason
	// GC C6: a CLI must be a valid, dialable UK number: 10 or 11 digits in
	// national form (0 + 9 or 10 digits).
	if l := len(n.National); l < 10 || l > 11 {
		r = append(r, ReasonUKLength)
	}
	// Ofcom: premium-rate (09) numbers must not be presented as CLI.
	if n.Type == phonenumbers.PREMIUM_RATE || (len(n.National) >= 2 && n.National[:2] == "09") {
		r = append(r, ReasonPremiumRate)
	}
	return r
}

// ukDialClass is the class Ofcom's numbering plan gives a UK national
// significant number (the digits after +44), where libphonenumber's types
// are not specific: they call 084 and 0870 premium rate, and 118 and an
// unallocated 09 number no type at all. ok is false when the ranges say
// nothing and libphonenumber's type decides.
func ukDialClass(nsn string) (c DialClass, ok bool) {
	if len(nsn) == 6 && strings.HasPrefix(nsn, "118") {
		// 118xxx directory enquiries, pounds a call; Reading's 0118
		// numbers are ten digits.
		return DialPremiumRate, true
	}
	if len(nsn) < 7 {
		// A short code (999, 9999, 101): no range below applies. UK
		// numbers have 7, 9 or 10 digits after the 0.
		return "", false
	}
	switch {
	case strings.HasPrefix(nsn, "9"):
		// 09: premium-rate services, allocated or not (the trunk may still
		// route one libphonenumber does not know).
		return DialPremiumRate, true
	case strings.HasPrefix(nsn, "87") && !strings.HasPrefix(nsn, "870"):
		// 0871-0873 are PSA-regulated premium rate; 0874-0879 are not
		// allocated, and get the class of their neighbours.
		return DialPremiumRate, true
	case strings.HasPrefix(nsn, "84"), strings.HasPrefix(nsn, "870"):
		// 084 and 0870: a service charge, not premium rate.
		return DialSharedCost, true
	case strings.HasPrefix(nsn, "70"):
		// 070 personal numbering.
		return DialPersonal, true
	case strings.HasPrefix(nsn, "76") && !strings.HasPrefix(nsn, "7624"):
		// 076 radiopaging; 07624 is the Isle of Man's mobiles.
		return DialPersonal, true
	}
	return "", false
}
