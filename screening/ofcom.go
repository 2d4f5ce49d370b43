package screening

import "github.com/nyaruka/phonenumbers"

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
