package api

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cleanline/cleanline/cmd/internal/admin"
)

// Config is what the admin listener serves.
type Config struct {
	API    admin.API // nil: the API's routes answer unavailable
	Tokens []Token   // none: every route is open (a loopback listener only; cmd/cleanline enforces it)
	Log    *zap.Logger
	Handlers

	// Keyring, when set, replaces Tokens: tokens a reload can replace.
	Keyring *Keyring
	// Pages, when set, is the carer's web page (package web), served under
	// PagesPath, with / sending a browser there. It is built with this
	// listener's token check.
	Pages func(Tokens) (http.Handler, error)
}

// PagesPath is where the carer's page is served.
const PagesPath = "/carer/"

type server struct {
	api  admin.API
	keys *Keyring
	log  *zap.Logger
	doc  []byte // the OpenAPI document, built once
}

// NewHandler is the admin listener's whole handler: every route of the
// table on one ServeMux, each behind its scope.
func NewHandler(cfg Config) (http.Handler, error) {
	mux, err := newMux(cfg)
	return mux, err
}

func newMux(cfg Config) (*http.ServeMux, error) {
	keys := cfg.Keyring
	if keys == nil {
		var err error
		if keys, err = NewKeyring(cfg.Tokens); err != nil {
			return nil, err
		}
	}
	s := &server{api: cfg.API, keys: keys, log: cfg.Log}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	h := cfg.Handlers
	if h.Profiles == nil {
		h.Profiles = profiles()
	}
	routes := Routes(h)
	doc, err := Document(routes)
	if err != nil {
		return nil, err
	}
	if s.doc, err = json.Marshal(doc); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.Handle(rt.Pattern(), s.route(rt))
	}
	// Anything else under /v1/: a JSON 404, after the token is checked, so
	// that the API's shape is not told to whoever asks.
	mux.Handle("/v1/", s.route(Route{ID: "unknown", access: accessRead}))
	if cfg.Pages != nil {
		pages, err := cfg.Pages(s)
		if err != nil {
			return nil, err
		}
		mux.Handle(PagesPath, pages)
		mux.Handle("GET /{$}", http.RedirectHandler(PagesPath, http.StatusSeeOther))
	}
	return mux, nil
}

// route serves one route: authenticate, decode, call, answer.
func (s *server) route(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rw := &statusWriter{ResponseWriter: w}
		who, err := s.authenticate(r, rt)
		switch {
		case err != nil:
		case rt.ID == "unknown":
			err = admin.FromCode("not_found", "no such route: "+r.Method+" "+r.URL.Path)
		case rt.ID == "openapi":
			rw.Header().Set("Content-Type", "application/json")
			_, _ = rw.Write(s.doc)
		case s.api == nil && (rt.call != nil || rt.stream != nil):
			err = admin.FromCode("unavailable", "no admin service on this listener")
		case rt.call == nil && rt.stream == nil:
			if rt.raw == nil {
				err = admin.FromCode("not_found", "not served here: "+r.URL.Path)
				break
			}
			rt.raw.ServeHTTP(rw, r)
		case rt.stream != nil:
			err = s.stream(rw, r, rt)
		default:
			err = s.call(rw, r, rt, who)
		}
		if err != nil {
			s.fail(rw, rt, err)
		}
		s.logRequest(r, rt, who, rw.status, time.Since(start), err)
	})
}

func (s *server) call(w http.ResponseWriter, r *http.Request, rt Route, who caller) error {
	in, err := decode(w, r, rt)
	if err != nil {
		return err
	}
	// What the caller writes is recorded as theirs, unless they say whose.
	switch v := in.(type) {
	case *admin.BlockAdd:
		if v.Source == "" {
			v.Source = who.source()
		}
	case *admin.ReportIn:
		if v.Source == "" {
			v.Source = who.source()
		}
	}
	out, err := rt.call(r.Context(), s.api, in)
	if err != nil {
		return err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
	return nil
}

// stream answers one JSON value a line; an error after the first line can
// only cut the stream short, which the client sees as a truncated last
// line or a missing end mark.
func (s *server) stream(w http.ResponseWriter, r *http.Request, rt Route) error {
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	started := false
	err := rt.stream(r.Context(), s.api, func(v any) error {
		started = true
		return enc.Encode(v)
	})
	if err != nil && started {
		s.log.Warn("admin export cut short", zap.Error(err))
		return nil
	}
	return err
}

// errorBody is every error's JSON.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (s *server) fail(w http.ResponseWriter, rt Route, err error) {
	code, status := admin.CodeOf(err)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", challenge(err))
	}
	if status == http.StatusForbidden {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cleanline", error="insufficient_scope"`)
	}
	var body errorBody
	body.Error.Code, body.Error.Message = code, err.Error()
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// logRequest logs who did what: changes at info (the audit trail of the
// blocklist), reads at debug. Never the Authorization header.
func (s *server) logRequest(r *http.Request, rt Route, who caller, status int, took time.Duration, err error) {
	lvl := zapcore.DebugLevel
	switch {
	case status >= 500:
		lvl = zapcore.ErrorLevel
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		lvl = zapcore.WarnLevel
	case r.Method != http.MethodGet && status < 300:
		lvl = zapcore.InfoLevel
	}
	ce := s.log.Check(lvl, "admin request")
	if ce == nil {
		return
	}
	fields := []zap.Field{zap.String("op", rt.ID), zap.String("method", r.Method), zap.String("path", r.URL.Path),
		zap.Int("status", status), zap.Duration("took", took), zap.String("remote", r.RemoteAddr)}
	if n := who.name(); n != "" {
		fields = append(fields, zap.String("token", n))
	}
	if err != nil {
		fields = append(fields, zap.String("error", err.Error()))
	}
	ce.Write(fields...)
}

// statusWriter remembers the status written, for the log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets a profile or an export stream.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection (pprof's
// profile and trace extend their write deadline through it).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// profiles serves net/http/pprof's pages, registered by hand: importing
// the package for its side effect would put them on http.DefaultServeMux,
// package-level state.
func profiles() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("name") {
		case "cmdline":
			pprof.Cmdline(w, r)
		case "profile":
			pprof.Profile(w, r)
		case "symbol":
			pprof.Symbol(w, r)
		case "trace":
			pprof.Trace(w, r)
		default:
			pprof.Index(w, r) // the index, and heap, goroutine... by name
		}
	})
}
