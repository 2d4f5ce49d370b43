package web

import (
	"fmt"
	"time"
)

// The page's words: what screening's reason codes, a call's state, the
// person's choice and a call's outcome mean, said to a carer. The codes
// are screening's (screening/verdict.go) and sip's (sip/live.go, the call
// record's outcome and choice): stable, so a code this list lacks is shown
// as itself, never hidden.

// reasons says why screening decided as it did, one sentence a code.
var reasons = map[string]string{
	"trusted":                   "This number is one of your trusted contacts, so it is always put through.",
	"cli.withheld":              "The caller hid their number.",
	"cli.invalid":               "The number shown is not a real phone number. Scammers often fake the number they show.",
	"cli.premium_rate":          "The number shown is a premium-rate (09) number. Those never make calls, so it was faked.",
	"cli.uk_length":             "The number shown has the wrong number of digits for a UK number.",
	"cli.uk_from_international": "The call came from abroad but showed a UK number, so the number was faked.",
	"cli.asserted_mismatch":     "The phone company's record of the caller does not match the number shown.",
	"protected.spoofed":         "The caller pretended to be a number that never rings anyone, such as a bank's or the police's. This is a scam.",
	"blocklist.confirmed":       "This number is known to be used by scammers.",
	"blocklist.reported":        "Someone has reported this number as a possible scam.",
	"blocklist.threshold":       "Several people have reported this number, so it is now blocked.",
	"blocklist.range":           "This number belongs to a group of numbers used by scammers.",
	"blocklist.line":            "This number is blocked for this line (by you or by the operator).",
	"cooldown":                  "This caller was warned or turned away a short while ago and called again.",
	"velocity":                  "This caller has rung many different homes in a short time.",
	"policy.strict":             "This line puts only trusted contacts straight through. Everyone else hears a warning first.",
	"store.unavailable":         "CleanLine could not look the number up in time.",
}

func reasonText(code string) string {
	if s, ok := reasons[code]; ok {
		return s
	}
	return fmt.Sprintf("Another reason (CleanLine calls it %q).", code)
}

// verdicts says what CleanLine did with a caller (screening's actions).
var verdicts = map[string]string{
	"allow": "Put through",
	"warn":  "Warned first: the person heard a warning before the call",
	"block": "Blocked: the phone did not ring",
	"defer": "Asked to call back: CleanLine could not check the number in time",
}

// barredText is the verdict of the line's own call to a number its policy
// does not allow.
const barredText = "Not allowed: this line may not call that kind of number"

func verdictText(action string) string {
	if s, ok := verdicts[action]; ok {
		return s
	}
	return action
}

// states says what is happening in a live call (sip's states).
var states = map[string]string{
	"screening":  "Checking who is calling",
	"setup":      "Starting the call",
	"announcing": "Telling the caller the call is refused",
	"ringing":    "Ringing",
	"warning":    "The person is hearing the warning. The caller is waiting and cannot hear them.",
	"connecting": "Being answered",
	"connected":  "Talking now",
	"feature":    "Using a CleanLine service (such as the line check)",
}

func stateText(state string) string {
	if s, ok := states[state]; ok {
		return s
	}
	return state
}

// choices says what the person chose after the warning (the call record's
// choice).
var choices = map[string]string{
	"connect": "Chose to talk (pressed 1)",
	"report":  "Reported the caller as a scam (pressed 3)",
	"hang_up": "Hung up after the warning",
	"timeout": "Did not choose, so the call was turned away",
}

func choiceText(c string) string {
	if c == "" {
		return ""
	}
	if s, ok := choices[c]; ok {
		return s
	}
	return c
}

// outcomes says how a call ended (the call record's outcome).
var outcomes = map[string]string{
	"blocked":                    "Blocked",
	"barred":                     "Not allowed by this line's settings",
	"completed":                  "Answered",
	"caller_cancelled":           "The caller gave up before it was answered",
	"no_answer":                  "Not answered",
	"warn_refused":               "Hung up during the warning",
	"warn_timeout":               "Turned away: no choice after the warning",
	"warn_reported":              "Reported after the warning",
	"media_inactive":             "Cut off: the line went silent",
	"session_expired":            "Cut off: the call stopped answering",
	"shutdown":                   "Ended: CleanLine was restarting",
	"replaced_by_protected_call": "Ended so that an emergency or bank number could be called",
	"no_ack":                     "Cut off while being answered",
	"feature":                    "A CleanLine service",
	"ended_by_operator":          "Ended from this page or by the operator",
	"deferred":                   "Asked to call back later",
	"error":                      "Failed",
	"line_busy":                  "The line was busy",
	"trunk_busy":                 "The number called was busy",
}

func outcomeText(o string) string {
	if o == "" {
		return ""
	}
	if s, ok := outcomes[o]; ok {
		return s
	}
	return o
}

// duration is d in words a person reads at a glance.
func duration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Second:
		return "less than a second"
	case d < time.Minute:
		return plural(int(d/time.Second), "second")
	case d < time.Hour:
		m, s := int(d/time.Minute), int(d%time.Minute/time.Second)
		if s == 0 {
			return plural(m, "minute")
		}
		return plural(m, "minute") + " " + plural(s, "second")
	}
	h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
	if m == 0 {
		return plural(h, "hour")
	}
	return plural(h, "hour") + " " + plural(m, "minute")
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// when is t as a carer reads it, relative to now: "today at 14:02",
// "yesterday at 09:15", "Monday 3 March at 14:02".
func when(t, now time.Time) string {
	t = t.In(now.Location())
	y, m, d := now.Date()
	today := time.Date(y, m, d, 0, 0, 0, 0, now.Location())
	switch {
	case !t.Before(today):
		return "today at " + t.Format("15:04")
	case !t.Before(today.AddDate(0, 0, -1)):
		return "yesterday at " + t.Format("15:04")
	case t.Year() == now.Year():
		return t.Format("Monday 2 January at 15:04")
	}
	return t.Format("2 January 2006 at 15:04")
}
