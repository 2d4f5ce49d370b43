// Package web is the carer's page: a few server-rendered HTML pages on the
// admin listener (under api.PagesPath) where a line's carer signs in with
// their token and sees the line's calls, live and recent, its trusted
// contacts and the numbers blocked for it, and acts on them: trust or
// remove a contact, block or report a caller, end a live call. Every
// operation is a call to admin.API, the service the HTTP API and the CLI
// use; this package only decides who may, and says what happened in plain
// words.
//
// No JavaScript: forms and links, readable on a phone. Signing in checks
// the token with the API's own check (api.Tokens); the browser then holds
// only a random session ID (HttpOnly, SameSite=Strict, Secure on TLS).
// Every form is checked twice against forgery: http.CrossOriginProtection
// refuses a cross-origin POST, and each form carries its session's token.
package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/cleanline/cleanline/cmd/internal/admin"
	"github.com/cleanline/cleanline/cmd/internal/admin/api"
)

// Config is what the page needs.
type Config struct {
	API    admin.API
	Tokens api.Tokens
	// Secure: the listener is TLS; cookies are sent over TLS only.
	Secure bool
	Log    *zap.Logger
	// SessionTTL is how long a sign-in lasts (default 12 h); MaxSessions
	// how many are held at once (default 1000; the oldest makes room).
	SessionTTL  time.Duration
	MaxSessions int
	// LoginTries wrong tokens a source may send within LoginWindow
	// (defaults 5 and 15 min) before it must wait for the window's end.
	LoginTries  int
	LoginWindow time.Duration
	Now         func() time.Time // the clock; time.Now by default
}

// Limits of what a request may carry.
const (
	maxForm   = 8 << 10 // a form's body
	maxCalls  = 50      // recent calls shown
	maxListed = 1000    // trusted and blocked numbers shown (admin.MaxLimit)
	sources   = 10000   // sources whose failed sign-ins are remembered
)

//go:embed templates/*.html style.css
var files embed.FS

// site is the page's handler.
type site struct {
	api      admin.API
	tokens   api.Tokens
	log      *zap.Logger
	now      func() time.Time
	sessions *sessions
	limiter  *limiter
	pages    map[string]*template.Template
	css      []byte
	// cookie names the session cookie, login the sign-in form's.
	cookie, login string
	secure        bool
	loginKey      []byte // signs the sign-in form's token
	cop           *http.CrossOriginProtection
	h             http.Handler // the pages behind cop
}

// New is the carer's page, served under api.PagesPath; give it to
// api.Config.Pages.
func New(cfg Config) (http.Handler, error) {
	if cfg.API == nil || cfg.Tokens == nil {
		return nil, errors.New("web: the carer's page needs the admin API and the token check")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.SessionTTL, 12*time.Hour)
	def(&cfg.LoginWindow, 15*time.Minute)
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 1000
	}
	if cfg.LoginTries <= 0 {
		cfg.LoginTries = 5
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	s := &site{api: cfg.API, tokens: cfg.Tokens, log: cfg.Log, now: cfg.Now, secure: cfg.Secure,
		sessions: newSessions(cfg.MaxSessions, cfg.SessionTTL),
		limiter:  newLimiter(cfg.LoginTries, cfg.LoginWindow, sources),
		cookie:   "cleanline_session", login: "cleanline_signin",
		loginKey: []byte(random(32)), cop: http.NewCrossOriginProtection()}
	if s.secure {
		// RFC 6265bis §4.1.3.2: a __Host- cookie is Secure, host-only, Path=/.
		s.cookie, s.login = "__Host-"+s.cookie, "__Host-"+s.login
	}
	var err error
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	if s.css, err = files.ReadFile("style.css"); err != nil {
		return nil, err
	}
	s.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("carer page: cross-origin form refused", zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr),
			zap.String("origin", r.Header.Get("Origin")))
		s.message(w, r, http.StatusForbidden, "This form came from another website", "CleanLine only takes forms sent from its own page. Nothing was changed.")
	}))
	p := api.PagesPath
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+p+"{$}", s.home)
	mux.HandleFunc("GET "+p+"style.css", s.style)
	mux.HandleFunc("POST "+p+"signin", s.signIn)
	mux.HandleFunc("POST "+p+"signout", s.signOut)
	mux.HandleFunc("GET "+p+"lines/{line}", s.line)
	mux.HandleFunc("POST "+p+"lines/{line}/{action}", s.act)
	mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
		s.message(w, r, http.StatusNotFound, "There is no such page", "")
	})
	s.h = s.cop.Handler(mux)
	return s, nil
}

// ServeHTTP sets what every answer carries and refuses cross-origin forms
// before anything else reads the request.
func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// No script, no frames, forms only to this page: a stored caller name
	// that got past escaping would still run nothing.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	}
	s.h.ServeHTTP(w, r)
}

func (s *site) style(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=3600")
	_, _ = w.Write(s.css)
}

// who is a signed-in request: its session and its token as configured now.
type who struct {
	id    string // the session's ID (the cookie's value)
	sess  session
	token api.Token
}

// signedIn is the request's session, and its token as configured now: a
// token removed or changed by a reload so that it may no longer use the
// page ends the session.
func (s *site) signedIn(r *http.Request) (who, bool) {
	c, err := r.Cookie(s.cookie)
	if err != nil {
		return who{}, false
	}
	sess, ok := s.sessions.get(c.Value, s.now())
	if !ok {
		return who{}, false
	}
	tok, ok := s.tokens.Named(sess.token)
	if !ok || !usable(tok) {
		s.sessions.end(c.Value)
		return who{}, false
	}
	return who{id: c.Value, sess: sess, token: tok}, true
}

// usable says whether a token may sign in here: a carer's, or an
// operator's (admin), which sees every line. A read token changes nothing
// anywhere, and this page is for changing things.
func usable(t api.Token) bool { return t.Scope == api.ScopeCarer || t.Scope == api.ScopeAdmin }

// setCookie sets (or, with a zero expiry, clears) a cookie of the page.
func (s *site) setCookie(w http.ResponseWriter, name, value string, expires time.Time) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteStrictMode}
	if expires.IsZero() {
		c.MaxAge = -1
	} else {
		c.Expires, c.MaxAge = expires, int(expires.Sub(s.now()).Seconds())
	}
	http.SetCookie(w, c)
}

// sameToken compares a form's token with the one expected, in constant
// time.
func sameToken(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// signInToken is the sign-in form's token for the browser's sign-in
// cookie: there is no session yet to hold one, so the cookie holds a
// nonce and the form its HMAC (a signed double-submit), and nothing is
// stored for a visitor who never signs in.
func (s *site) signInToken(nonce string) string {
	m := hmac.New(sha256.New, s.loginKey)
	m.Write([]byte(nonce))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// remoteAddr is the request's source address: the connection's, never a
// header a client could write.
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.IPv6Unspecified()
	}
	return ap.Addr()
}

// audit logs a change made on the page, as the API logs its own: who (the
// token's name, never its secret), what, on which line, and how it went.
func (s *site) audit(r *http.Request, w who, op, line string, err error) {
	fields := []zap.Field{zap.String("op", op), zap.String("line", line), zap.String("token", w.token.Name),
		zap.String("remote", r.RemoteAddr)}
	if err != nil {
		code, _ := admin.CodeOf(err)
		s.log.Warn("carer page", append(fields, zap.String("code", code), zap.Error(err))...)
		return
	}
	s.log.Info("carer page", fields...)
}

// chrome is what every page shows around its content.
type chrome struct {
	Title  string
	Signed string // the token's name, when signed in
	CSRF   string // the session's form token
	Flash  *flash
}

// render writes page with data, or a plain error when it cannot.
func (s *site) render(w http.ResponseWriter, status int, page string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := s.pages[page].ExecuteTemplate(w, "layout", data); err != nil {
		s.log.Error("carer page: rendering", zap.String("page", page), zap.Error(err))
	}
}

// messagePage is a page that only says something.
type messagePage struct {
	chrome
	Text string
}

// message answers with a page that says title and text.
func (s *site) message(w http.ResponseWriter, r *http.Request, status int, title, text string) {
	p := messagePage{chrome: chrome{Title: title}, Text: text}
	if wh, ok := s.signedIn(r); ok {
		p.Signed, p.CSRF = wh.token.Name, wh.sess.csrf
	}
	s.render(w, status, "message", p)
}

func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("layout.html").ParseFS(files, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, name := range []string{"signin", "lines", "line", "message"} {
		t, err := base.Clone()
		if err != nil {
			return nil, err
		}
		if pages[name], err = t.ParseFS(files, "templates/"+name+".html"); err != nil {
			return nil, fmt.Errorf("web: template %s: %w", name, err)
		}
	}
	return pages, nil
}
