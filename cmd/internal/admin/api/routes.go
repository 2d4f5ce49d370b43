// Package api is the HTTP front door to admin.Service: JSON over HTTP under
// /v1/, bearer tokens with scopes, and its OpenAPI 3 document. One table
// (Routes) declares every route once, with its method, path, scope and the
// admin.API method it calls; the server registers its handlers from it,
// the Client calls through it, and the document is generated from it.
package api

import (
	"context"
	"net/http"
	"reflect"
	"strings"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/cmd/internal/admin"
)

// access is who may use a route.
type access int

const (
	// accessOpen: anyone, with or without a token (health, the document).
	accessOpen access = iota
	// accessAdmin: admin tokens.
	accessAdmin
	// accessRead: admin tokens, and read tokens when the method is GET.
	accessRead
	// accessLine: as accessRead, and carer tokens of the route's {line}.
	accessLine
)

// Route is one route: what the table declares of it.
type Route struct {
	ID      string // the OpenAPI operationId, and what the Client names it by
	Method  string
	Path    string // a Go ServeMux pattern's path, which is OpenAPI's too
	access  access
	Summary string

	in, out reflect.Type // the request and answer (admin types)
	call    func(ctx context.Context, a admin.API, in any) (any, error)
	// stream: the answer is out, one JSON value a line (NDJSON), from export.
	stream func(ctx context.Context, a admin.API, emit func(any) error) error
	// raw is a handler that is not the admin API's (metrics, health,
	// profiles, the document); produces is its content type.
	raw      http.Handler
	produces string
}

// Pattern is the route's ServeMux pattern: its path, matched exactly (a
// path ending in / would otherwise match everything under it).
func (r Route) Pattern() string {
	p := r.Method + " " + r.Path
	if strings.HasSuffix(p, "/") {
		p += "{$}"
	}
	return p
}

// op declares a route that calls one admin.API method (a method value
// such as admin.API.BlockAdd).
func op[I, O any](id, method, path string, acc access, summary string, fn func(admin.API, context.Context, I) (O, error)) Route {
	return Route{ID: id, Method: method, Path: path, access: acc, Summary: summary,
		in: reflect.TypeFor[I](), out: reflect.TypeFor[O](),
		call: func(ctx context.Context, a admin.API, in any) (any, error) { return fn(a, ctx, *in.(*I)) }}
}

// Handlers are the routes the admin API does not answer itself, served on
// the same listener.
type Handlers struct {
	Health  http.Handler // GET /healthz: open
	Metrics http.Handler // GET /metrics: read
	// Profiles serves /debug/pprof/ and /debug/pprof/{name} (admin); nil
	// for net/http/pprof's.
	Profiles http.Handler
}

// Routes is the table: every route of the admin listener. h's handlers
// may be nil when only the API's routes are wanted (the Client).
func Routes(h Handlers) []Route {
	get, post, del := http.MethodGet, http.MethodPost, http.MethodDelete
	return []Route{
		op("listBlocked", get, "/v1/blocklist", accessRead, "Page through the shared blocklist (every line's), by number", admin.API.BlockList),
		op("addBlocked", post, "/v1/blocklist", accessAdmin, "Block a number or a range (ending in *) for every line", admin.API.BlockAdd),
		{ID: "exportBlocklist", Method: get, Path: "/v1/blocklist/export", access: accessRead,
			Summary: "The whole shared blocklist, one JSON entry a line (NDJSON), in no particular order",
			in:      reflect.TypeFor[struct{}](), out: reflect.TypeFor[blocklist.Entry](),
			stream: func(ctx context.Context, a admin.API, emit func(any) error) error {
				return a.BlockExport(ctx, func(e blocklist.Entry) error { return emit(e) })
			}},
		op("importBlocklist", post, "/v1/blocklist/import", accessAdmin, "Import numbers into the shared blocklist: the body is the file (one number a line, or CSV number,reason,source,status)", admin.API.Import),
		op("getBlocked", get, "/v1/blocklist/{number}", accessRead, "One entry of the shared blocklist", admin.API.BlockGet),
		op("removeBlocked", del, "/v1/blocklist/{number}", accessAdmin, "Remove a number or range from the shared blocklist", admin.API.BlockRemove),
		op("report", post, "/v1/reports", accessAdmin, "Report a number (warned on every line; blocked at report_threshold reports)", admin.API.Report),

		op("listProtected", get, "/v1/protected", accessRead, "Page through the protected (never-originate) numbers", admin.API.ProtectList),
		op("addProtected", post, "/v1/protected", accessAdmin, "Protect a number: a call presenting it is spoofed, and dialling it ends the line's other calls first (D4)", admin.API.ProtectAdd),
		op("removeProtected", del, "/v1/protected/{number}", accessAdmin, "Unprotect a number", admin.API.ProtectRemove),

		op("check", get, "/v1/check", accessRead, "What a call from number to line would get, and why (a dry run)", admin.API.Check),
		op("checkDial", get, "/v1/check/dial", accessRead, "Whether line may dial number, and why", admin.API.CheckDial),

		op("listLines", get, "/v1/lines", accessRead, "Page through the configured lines", admin.API.Lines),
		op("getLine", get, "/v1/lines/{line}", accessLine, "One configured line: its numbers, features and policy", admin.API.Line),
		op("listTrusted", get, "/v1/lines/{line}/trusted", accessLine, "Page through the line's trusted contacts", admin.API.TrustList),
		op("addTrusted", post, "/v1/lines/{line}/trusted", accessLine, "Trust a number on the line: it always rings through", admin.API.TrustAdd),
		op("removeTrusted", del, "/v1/lines/{line}/trusted/{number}", accessLine, "Remove a trusted contact of the line", admin.API.TrustRemove),
		op("listLineBlocked", get, "/v1/lines/{line}/blocked", accessLine, "Page through the numbers blocked for the line alone", admin.API.LineBlockList),
		op("addLineBlocked", post, "/v1/lines/{line}/blocked", accessLine, "Block a number for the line alone", admin.API.LineBlockAdd),
		op("removeLineBlocked", del, "/v1/lines/{line}/blocked/{number}", accessLine, "Unblock a number for the line", admin.API.LineBlockRemove),
		op("reportForLine", post, "/v1/lines/{line}/reports", accessLine, "Report a number as the line's (as the person pressing 3 after a warning)", admin.API.Report),

		op("liveCalls", get, "/v1/calls/live", accessRead, "Page through the calls in progress, oldest first", admin.API.LiveCalls),
		op("endCall", del, "/v1/calls/live/{id}", accessAdmin, "End a call in progress: BYE on both legs, as a hang-up (D1)", admin.API.EndCall),
		op("lineLiveCalls", get, "/v1/lines/{line}/calls/live", accessLine, "Page through the line's calls in progress", admin.API.LiveCalls),
		op("endLineCall", del, "/v1/lines/{line}/calls/live/{id}", accessLine, "End the line's call in progress: BYE on both legs, as a hang-up (D1)", admin.API.EndCall),
		op("recentCalls", get, "/v1/calls", accessRead, "Page through call records, newest first", admin.API.RecentCalls),
		op("lineRecentCalls", get, "/v1/lines/{line}/calls", accessLine, "Page through the line's call records, newest first", admin.API.RecentCalls),
		op("reload", post, "/v1/reload", accessAdmin, "Reload the configuration without dropping a call", admin.API.Reload),
		op("listUpstream", get, "/v1/upstream", accessRead, "The trunks' registrations at their providers: state, last status, since when, next refresh or retry", admin.API.Upstream),

		{ID: "health", Method: get, Path: "/healthz", access: accessOpen, raw: h.Health, produces: "text/plain",
			Summary: "ok, or 503 with the reason (shutting down, a SIP listener that stopped accepting)"},
		{ID: "metrics", Method: get, Path: "/metrics", access: accessRead, raw: h.Metrics, produces: "text/plain",
			Summary: "Prometheus metrics"},
		{ID: "profiles", Method: get, Path: "/debug/pprof/", access: accessAdmin, raw: h.Profiles, produces: "text/html",
			Summary: "Go runtime profiles (net/http/pprof): the index"},
		{ID: "profile", Method: get, Path: "/debug/pprof/{name}", access: accessAdmin, raw: h.Profiles, produces: "application/octet-stream",
			Summary: "One Go runtime profile (heap, goroutine, profile, trace...)"},
		{ID: "openapi", Method: get, Path: "/openapi.json", access: accessOpen, produces: "application/json",
			Summary: "This document"},
	}
}
