package admin

import (
	"encoding/json"
	"io"
	"time"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/screening"
)

// The requests and answers of every operation. They are the HTTP API's
// JSON as well (package api): a field tagged path:"x" is the route's {x},
// one tagged query:"x" a query parameter, body:"raw" the raw request body;
// the other fields are the JSON body. Numbers are text as a person types
// them ("020 7946 0123", "+44 20 7946 01*"); screening reads them.

// ListQuery pages through a list: at most Limit items (default 100, at
// most 1000), after the item Cursor names (the Next of the page before).
type ListQuery struct {
	Limit  int    `json:"-" query:"limit"`
	Cursor string `json:"-" query:"cursor"`
}

// Page is one page of a list, in a stable order; Next, when set, is the
// cursor of the page after it.
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next_cursor,omitempty"`
}

// NumberRef names an entry of the shared blocklist or a protected number.
type NumberRef struct {
	Number string `json:"-" path:"number"`
}

// NumberIn is a number to add (protected numbers).
type NumberIn struct {
	Number string `json:"number"`
}

// LineRef names a configured line.
type LineRef struct {
	Line string `json:"-" path:"line"`
}

// LineList pages through a list of one line's.
type LineList struct {
	Line string `json:"-" path:"line"`
	ListQuery
}

// LineNumber is a number to add to one line's list (trusted, blocked).
type LineNumber struct {
	Line   string `json:"-" path:"line"`
	Number string `json:"number"`
}

// LineNumberRef names a number on one line's list.
type LineNumberRef struct {
	Line   string `json:"-" path:"line"`
	Number string `json:"-" path:"number"`
}

// Ack says what a change changed.
type Ack struct {
	Number string `json:"number,omitempty"` // E.164 (a range ends in '*')
	Line   string `json:"line,omitempty"`
	Call   string `json:"call,omitempty"`
}

// BlockAdd adds a number or a range (ending in '*') to the shared
// blocklist, which screens every line's calls.
type BlockAdd struct {
	Number string `json:"number"`
	Reason string `json:"reason,omitempty"`
	Source string `json:"source,omitempty"` // who says so; default the caller's name
	// Reported only warns (the default, confirmed, blocks).
	Reported bool `json:"reported,omitempty"`
	// Force lets a reported entry replace a confirmed one.
	Force bool `json:"force,omitempty"`
}

// BlockAdded is what BlockAdd did.
type BlockAdded struct {
	Number string           `json:"number"` // E.164; a range ends in '*'
	Added  bool             `json:"added"`  // new, rather than updated
	Status blocklist.Status `json:"status"` // the status asked for
	// Kept is the stronger status the entry kept instead (reported put
	// over confirmed without Force); empty when Status was stored.
	Kept blocklist.Status `json:"kept,omitempty"`
}

// ReportIn reports a number: one more report on the shared blocklist, a
// warning for every line until report_threshold reports block it.
type ReportIn struct {
	// Line is the line that reports it (source line:LINE, as the person's
	// own report after a warning); empty for an operator's.
	Line   string `json:"-" path:"line"`
	Number string `json:"number"`
	Reason string `json:"reason,omitempty"` // default "reported"
	Source string `json:"source,omitempty"` // without Line; default the caller's name
}

// ImportIn streams a list of numbers into the shared blocklist (one a
// line, or CSV number,reason,source,status; README "Import format").
type ImportIn struct {
	Name     string    `json:"-" query:"name"` // the file's name: rejects and the default source name it
	Reported bool      `json:"-" query:"reported"`
	Force    bool      `json:"-" query:"force"`
	Source   string    `json:"-" query:"source"` // default import:NAME
	Data     io.Reader `json:"-" body:"raw"`
}

// Imported is what an import did; the good lines are stored even when
// some were rejected.
type Imported struct {
	Added    int      `json:"added"`
	Updated  int      `json:"updated"`
	Rejected int      `json:"rejected"`
	Rejects  []Reject `json:"rejects"`
}

// Reject is one line an import could not take.
type Reject struct {
	Line    int    `json:"line"`
	Message string `json:"message"`
}

// CheckIn asks what a call from Number to Line would get (a dry run:
// nothing is recorded).
type CheckIn struct {
	Number string `json:"-" query:"number"`
	// Line is the line called; empty for a line with the default policy.
	Line          string `json:"-" query:"line"`
	International bool   `json:"-" query:"international"` // as if on an international trunk
}

// CheckResult is the verdict a call would get, and why.
type CheckResult struct {
	Input      string                  `json:"input"`
	Line       string                  `json:"line"`
	Action     string                  `json:"action"` // allow, warn, block; defer when the store did not answer
	Number     string                  `json:"number,omitempty"`
	Reasons    []string                `json:"reasons"`
	Entry      *screening.EntrySummary `json:"entry,omitempty"`
	StoreError string                  `json:"store_error,omitempty"`
	// Why says in words why the number is invalid, when it is.
	Why string `json:"why,omitempty"`
}

// DialIn asks whether Line may dial Number.
type DialIn struct {
	Number string `json:"-" query:"number"`
	Line   string `json:"-" query:"line"` // empty: the default policy
}

// DialResult is what serve does when the line dials the number.
type DialResult struct {
	Input     string   `json:"input"`
	Line      string   `json:"line"`
	Action    string   `json:"action"` // allow or bar
	Number    string   `json:"number"`
	Feature   string   `json:"feature,omitempty"` // line_check or report: answered by cleanline
	Emergency bool     `json:"emergency"`
	Protected bool     `json:"protected"`
	Trusted   bool     `json:"trusted"`
	Classes   []string `json:"classes"`
	Barred    string   `json:"barred"` // the class the line's policy bars; empty when allowed
	// Why says in words why it is barred, or why it is no number.
	Why string `json:"why,omitempty"`
}

// LineInfo is a configured line: its numbers and what it has on.
type LineInfo struct {
	Name    string   `json:"name"`
	Numbers []string `json:"numbers"` // as configured
	// Features are the codes the line may dial that cleanline answers
	// ("-": off).
	Features Features   `json:"features"`
	Policy   LinePolicy `json:"policy"`
	// Devices are the usernames of the phones that register as the line;
	// Registered where they are registered now, as far as the running
	// service knows (none without one).
	Devices    []string           `json:"devices,omitempty"`
	Registered []RegisteredDevice `json:"registered,omitempty"`
}

// RegisteredDevice is one contact a line's device registered.
type RegisteredDevice struct {
	Device    string    `json:"device"`
	Contact   string    `json:"contact"`
	Source    string    `json:"source"`     // the address and port its REGISTER came from
	Transport string    `json:"transport"`  // udp, tcp, tls
	BehindNAT bool      `json:"behind_nat"` // reached at Source, not at its Contact
	Expires   time.Time `json:"expires"`
}

// Features are the feature codes in force.
type Features struct {
	LineCheck string `json:"line_check"`
	Report    string `json:"report"`
}

// LinePolicy is a line's screening policy, in the configuration's words.
type LinePolicy struct {
	Withheld        string               `json:"withheld"`
	ReportThreshold int                  `json:"report_threshold"`
	Cooldown        string               `json:"cooldown"`
	Strict          bool                 `json:"strict"`
	StoreFailure    string               `json:"store_failure"`
	Dial            screening.DialPolicy `json:"dial"`
}

// LiveQuery lists live calls, of one line when Line is set.
type LiveQuery struct {
	Line string `json:"-" path:"line"`
	ListQuery
}

// LiveCall is a call in progress (sip.LiveCall, in the API's words).
type LiveCall struct {
	ID        string     `json:"id"`
	Direction string     `json:"direction"` // inbound (trunk → line) or outbound (the line's own)
	Line      string     `json:"line"`
	Trunk     string     `json:"trunk,omitempty"`
	Caller    string     `json:"caller,omitempty"` // as presented; empty when withheld
	Withheld  bool       `json:"withheld,omitempty"`
	Number    string     `json:"number,omitempty"` // as screened (E.164)
	Dialled   string     `json:"dialled,omitempty"`
	Action    string     `json:"action,omitempty"` // the verdict
	Reasons   []string   `json:"reasons,omitempty"`
	State     string     `json:"state"` // screening, setup, announcing, ringing, warning, connecting, connected, feature
	Since     time.Time  `json:"since"`
	Answered  *time.Time `json:"answered,omitempty"`
}

// CallRef names a live call, of one line when Line is set.
type CallRef struct {
	Line string `json:"-" path:"line"`
	ID   string `json:"-" path:"id"`
}

// RecentQuery asks for call records, newest first.
type RecentQuery struct {
	Line   string    `json:"-" path:"line"`
	Caller string    `json:"-" query:"caller"`
	Since  time.Time `json:"-" query:"since"`
	Until  time.Time `json:"-" query:"until"`
	ListQuery
}

// Record is one call record or event as the event store keeps it (its
// schema is versioned by the events themselves).
type Record = json.RawMessage

// ReloadIn asks the service to reload its configuration.
type ReloadIn struct{}

// UpstreamInfo is one trunk's registration at its provider.
type UpstreamInfo struct {
	Trunk     string    `json:"trunk"`
	Registrar string    `json:"registrar"`
	AOR       string    `json:"aor"`     // the address of record registered
	Contact   string    `json:"contact"` // where the provider's calls come
	State     string    `json:"state"`   // registering, registered, failing
	Since     time.Time `json:"since"`
	// LastStatus is the registrar's last final response (absent when none
	// came: LastReason says why).
	LastStatus   int        `json:"last_status,omitempty"`
	LastReason   string     `json:"last_reason,omitempty"`
	Failures     int        `json:"failures"`               // attempts failed in a row
	Expires      *time.Time `json:"expires,omitempty"`      // when the binding lapses, while registered
	NextAttempt  *time.Time `json:"next_attempt,omitempty"` // the next refresh, or retry
	ServiceRoute []string   `json:"service_route,omitempty"`
	Path         []string   `json:"path,omitempty"`
	// Server is the provider's server in use when DNS SRV found it
	// (target:port; the next one after a failure).
	Server string `json:"server,omitempty"`
}
