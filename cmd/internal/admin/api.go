// Package admin is CleanLine's one administrative service: every operation
// an operator, a script or a line's carer performs (the blocklist, reports,
// imports, protected numbers, each line's trusted contacts and blocked
// numbers, checks, lines, live calls, call records, reload) is one method
// of Service. The CLI and the HTTP API (package api) are two front doors to
// it: the CLI calls a Service over the store when no service runs, and the
// running service's API when one does, through the same API interface.
//
// Numbers arrive as text and are read by screening alone. Errors carry a
// stable code and an HTTP status (CodeOf) and the message the CLI prints.
package admin

import (
	"context"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/sip"
)

// API is every administrative operation. *Service implements it over the
// store; the HTTP client (api.Client) implements it over a running
// service's API. Each is func(ctx, request) (answer, error), which is what
// lets one route table drive the HTTP server, the client and the OpenAPI
// document; BlockExport streams.
type API interface {
	// The shared blocklist, which screens every line's calls.
	BlockAdd(ctx context.Context, in BlockAdd) (BlockAdded, error)
	BlockRemove(ctx context.Context, in NumberRef) (Ack, error)
	BlockGet(ctx context.Context, in NumberRef) (blocklist.Entry, error)
	BlockList(ctx context.Context, in ListQuery) (Page[blocklist.Entry], error)
	// BlockExport calls fn for every entry, in no particular order,
	// streaming: the whole list without paging through it.
	BlockExport(ctx context.Context, fn func(blocklist.Entry) error) error
	Report(ctx context.Context, in ReportIn) (blocklist.Entry, error)
	Import(ctx context.Context, in ImportIn) (Imported, error)

	// Protected (never-originate) numbers, for every line.
	ProtectAdd(ctx context.Context, in NumberIn) (Ack, error)
	ProtectRemove(ctx context.Context, in NumberRef) (Ack, error)
	ProtectList(ctx context.Context, in ListQuery) (Page[string], error)

	// One line's trusted contacts and the numbers blocked for it alone.
	TrustAdd(ctx context.Context, in LineNumber) (Ack, error)
	TrustRemove(ctx context.Context, in LineNumberRef) (Ack, error)
	TrustList(ctx context.Context, in LineList) (Page[string], error)
	LineBlockAdd(ctx context.Context, in LineNumber) (Ack, error)
	LineBlockRemove(ctx context.Context, in LineNumberRef) (Ack, error)
	LineBlockList(ctx context.Context, in LineList) (Page[string], error)

	// Dry runs of what serve decides.
	Check(ctx context.Context, in CheckIn) (CheckResult, error)
	CheckDial(ctx context.Context, in DialIn) (DialResult, error)

	// The lines, their calls, and the service itself.
	Lines(ctx context.Context, in ListQuery) (Page[LineInfo], error)
	Line(ctx context.Context, in LineRef) (LineInfo, error)
	LiveCalls(ctx context.Context, in LiveQuery) (Page[LiveCall], error)
	EndCall(ctx context.Context, in CallRef) (Ack, error)
	RecentCalls(ctx context.Context, in RecentQuery) (Page[Record], error)
	Reload(ctx context.Context, in ReloadIn) (Ack, error)
	// The trunks' registrations at their providers.
	Upstream(ctx context.Context, in ListQuery) (Page[UpstreamInfo], error)
}

// Lines are the configured lines. It is asked on every operation, so a
// reloaded configuration is seen at once.
type Lines interface {
	Lines() []Line
}

// Line is a configured line as the service needs it.
type Line struct {
	Name    string
	Numbers []string
	Devices []string // the usernames of its phones that register (sip.lines[].devices)
}

// LinesFunc makes a function a Lines.
type LinesFunc func() []Line

// Lines calls f.
func (f LinesFunc) Lines() []Line { return f() }

// Calls are the live calls; *sip.Server implements it.
type Calls interface {
	LiveCalls() []sip.LiveCall
	// EndCall ends a call as a hang-up does (D1: BYE on both legs);
	// sip.ErrNoSuchCall when it is not live.
	EndCall(id string) error
}

// Upstream are the trunks' registrations at their providers; *sip.Server
// implements it.
type Upstream interface {
	Upstream() []sip.UpstreamState
}

// Registrations are the lines' devices registered now; *sip.Server
// implements it.
type Registrations interface {
	Registrations(line string) []sip.Registration
}

// Events reads call records and events back (the event store).
type Events interface {
	RecentCalls(ctx context.Context, q RecentQuery) (Page[Record], error)
}

// Reloader reloads the running service's configuration.
type Reloader interface {
	Reload(ctx context.Context) error
}

var (
	_ API           = (*Service)(nil)
	_ Calls         = (*sip.Server)(nil)
	_ Upstream      = (*sip.Server)(nil)
	_ Registrations = (*sip.Server)(nil)
)
