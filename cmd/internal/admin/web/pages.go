package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/cleanline/cleanline/cmd/internal/admin"
	"github.com/cleanline/cleanline/cmd/internal/admin/api"
)

// The pages: signing in and out, the list of the carer's lines, a line's
// page, and the changes its forms make.

// signInPage is the sign-in form.
type signInPage struct {
	chrome
	Error string
	Open  bool // no token is configured: nobody can sign in
}

// home is the sign-in form, or the carer's lines (straight to the line's
// page when there is one).
func (s *site) home(w http.ResponseWriter, r *http.Request) {
	wh, ok := s.signedIn(r)
	if !ok {
		s.signInForm(w, r, http.StatusOK, "")
		return
	}
	lines, err := s.linesOf(r.Context(), wh.token)
	if err == nil && len(lines) == 1 {
		http.Redirect(w, r, linePath(lines[0].Name), http.StatusSeeOther)
		return
	}
	p := linesPage{chrome: s.chromeOf(wh, "Your lines")}
	for _, l := range lines {
		p.Lines = append(p.Lines, lineLink{Name: l.Name, Numbers: l.Numbers, Path: linePath(l.Name)})
	}
	if err != nil {
		p.Error = "The lines could not be listed: " + err.Error()
	}
	s.render(w, http.StatusOK, "lines", p)
}

// linesPage lists the carer's lines.
type linesPage struct {
	chrome
	Lines []lineLink
	Error string
}

type lineLink struct {
	Name    string
	Numbers []string
	Path    string
}

func (s *site) chromeOf(wh who, title string) chrome {
	return chrome{Title: title, Signed: wh.token.Name, CSRF: wh.sess.csrf, Flash: s.sessions.takeFlash(wh.id)}
}

// linesOf are the configured lines tok cares for: every one for an admin
// token, a carer's own (those still configured) for a carer's.
func (s *site) linesOf(ctx context.Context, tok api.Token) ([]admin.LineInfo, error) {
	if tok.Scope == api.ScopeCarer {
		var out []admin.LineInfo
		for _, l := range tok.Lines {
			li, err := s.api.Line(ctx, admin.LineRef{Line: l})
			if err == nil {
				out = append(out, li)
			} else if !errors.Is(err, admin.ErrUnknownLine) {
				return out, err
			}
		}
		return out, nil
	}
	var out []admin.LineInfo
	q := admin.ListQuery{Limit: admin.MaxLimit}
	for {
		p, err := s.api.Lines(ctx, q)
		if err != nil {
			return out, err
		}
		out = append(out, p.Items...)
		if p.Next == "" {
			return out, nil
		}
		q.Cursor = p.Next
	}
}

// nonceLen is the length of a sign-in cookie's nonce (16 random bytes).
const nonceLen = 22

func linePath(line string) string { return api.PagesPath + "lines/" + url.PathEscape(line) }

// signInForm shows the sign-in form with its token: for the browser's
// sign-in cookie, or a new one (so that two sign-in pages open at once
// both work, and a refused form gets a fresh one).
func (s *site) signInForm(w http.ResponseWriter, r *http.Request, status int, problem string) {
	c, err := r.Cookie(s.login)
	nonce := ""
	if err == nil && status == http.StatusOK && len(c.Value) == nonceLen {
		nonce = c.Value
	} else {
		nonce = random(16)
	}
	s.setCookie(w, s.login, nonce, s.now().Add(time.Hour))
	p := signInPage{chrome: chrome{Title: "Sign in", CSRF: s.signInToken(nonce)}, Error: problem, Open: s.tokens.Open()}
	s.render(w, status, "signin", p)
}

// signIn checks the token a person typed, as the API checks a bearer
// token, and starts a session. A source that sent too many wrong tokens
// is refused before its token is even looked at.
func (s *site) signIn(w http.ResponseWriter, r *http.Request) {
	now, src := s.now(), remoteAddr(r)
	if ok, until := s.limiter.allowed(src, now); !ok {
		w.Header().Set("Retry-After", fmt.Sprint(int(until.Sub(now).Seconds())+1))
		s.log.Warn("carer page: sign-in refused, too many wrong tokens", zap.String("remote", r.RemoteAddr))
		s.signInForm(w, r, http.StatusTooManyRequests, fmt.Sprintf(
			"Too many wrong tokens were typed from this device. Try again in %s.", duration(until.Sub(now))))
		return
	}
	if err := r.ParseForm(); err != nil {
		s.signInForm(w, r, http.StatusBadRequest, "The form could not be read. Please try again.")
		return
	}
	c, err := r.Cookie(s.login)
	if err != nil || !sameToken(r.PostForm.Get("csrf"), s.signInToken(c.Value)) {
		s.log.Warn("carer page: sign-in form without its token", zap.String("remote", r.RemoteAddr))
		s.signInForm(w, r, http.StatusForbidden, "This form had expired. Please type your token again.")
		return
	}
	secret := strings.TrimSpace(r.PostForm.Get("token"))
	tok, ok := s.tokens.Identify(secret)
	if !ok {
		s.limiter.fail(src, now)
		s.log.Warn("carer page: wrong token", zap.String("remote", r.RemoteAddr)) // never what was typed
		s.signInForm(w, r, http.StatusUnauthorized, "That token was not accepted. Check it and try again.")
		return
	}
	if !usable(tok) {
		s.log.Warn("carer page: token may not sign in", zap.String("token", tok.Name), zap.String("scope", string(tok.Scope)))
		s.signInForm(w, r, http.StatusForbidden, "This token can only read, so it cannot be used here. Ask for a carer's token.")
		return
	}
	if old, ok := s.signedIn(r); ok {
		s.sessions.end(old.id) // a sign-in replaces the browser's session
	}
	id, sess := s.sessions.create(tok.Name, now)
	s.setCookie(w, s.cookie, id, sess.expires)
	s.setCookie(w, s.login, "", time.Time{})
	s.log.Info("carer page: signed in", zap.String("token", tok.Name), zap.String("remote", r.RemoteAddr))
	http.Redirect(w, r, api.PagesPath, http.StatusSeeOther)
}

// signOut ends the session; its form carries the session's token, so a
// forged one cannot sign anyone out either.
func (s *site) signOut(w http.ResponseWriter, r *http.Request) {
	if wh, ok := s.form(w, r); ok {
		s.sessions.end(wh.id)
		s.log.Info("carer page: signed out", zap.String("token", wh.token.Name))
	}
	s.setCookie(w, s.cookie, "", time.Time{})
	http.Redirect(w, r, api.PagesPath, http.StatusSeeOther)
}

// form reads a POST's form and checks it carries its session's token;
// when not, it has answered.
func (s *site) form(w http.ResponseWriter, r *http.Request) (who, bool) {
	wh, ok := s.signedIn(r)
	if !ok {
		s.message(w, r, http.StatusUnauthorized, "Please sign in again", "Your sign-in has ended. Nothing was changed.")
		return who{}, false
	}
	if err := r.ParseForm(); err != nil {
		s.message(w, r, http.StatusBadRequest, "The form could not be read", "Nothing was changed.")
		return who{}, false
	}
	if !sameToken(r.PostForm.Get("csrf"), wh.sess.csrf) {
		s.log.Warn("carer page: form without its session's token", zap.String("path", r.URL.Path),
			zap.String("token", wh.token.Name), zap.String("remote", r.RemoteAddr))
		s.message(w, r, http.StatusForbidden, "This form had expired", "Nothing was changed. Go back to the page, reload it and try again.")
		return who{}, false
	}
	return wh, true
}

// linePage is one line's page.
type linePage struct {
	chrome
	Line     admin.LineInfo
	Path     string
	Others   bool // the carer has other lines
	Live     []callView
	LiveErr  string
	Recent   []callView
	Unread   int
	Recently string // why recent calls are not shown
	Trusted  []string
	TrustErr string
	Blocked  []string
	BlockErr string
}

// line is a line's page, for a token that cares for it; any other sees
// a 403 that tells nothing of the line.
func (s *site) line(w http.ResponseWriter, r *http.Request) {
	wh, ok := s.signedIn(r)
	if !ok {
		http.Redirect(w, r, api.PagesPath, http.StatusSeeOther)
		return
	}
	name := r.PathValue("line")
	if !wh.token.Cares(name) {
		s.notYours(w, r, wh, name)
		return
	}
	ctx, now := r.Context(), s.now()
	li, err := s.api.Line(ctx, admin.LineRef{Line: name})
	if err != nil {
		status := http.StatusServiceUnavailable
		if _, st := admin.CodeOf(err); st == http.StatusNotFound {
			status = http.StatusNotFound
		}
		s.message(w, r, status, "This line could not be shown", err.Error())
		return
	}
	p := linePage{chrome: s.chromeOf(wh, "Calls to "+name), Line: li, Path: linePath(name),
		Others: wh.token.Scope == api.ScopeAdmin || len(wh.token.Lines) > 1}
	if live, err := s.api.LiveCalls(ctx, admin.LiveQuery{Line: name, ListQuery: admin.ListQuery{Limit: admin.MaxLimit}}); err != nil {
		p.LiveErr = "Calls happening now cannot be shown: " + err.Error()
	} else {
		for _, c := range live.Items {
			p.Live = append(p.Live, liveView(c, now))
		}
	}
	recent, err := s.api.RecentCalls(ctx, admin.RecentQuery{Line: name, ListQuery: admin.ListQuery{Limit: maxCalls}})
	switch {
	case errors.Is(err, admin.ErrUnavailable):
		p.Recently = "Call history is not available: this CleanLine does not keep a record of past calls yet."
	case err != nil:
		p.Recently = "Call history could not be loaded: " + err.Error()
	default:
		p.Recent, p.Unread = recentViews(recent.Items, now)
	}
	if t, err := s.api.TrustList(ctx, admin.LineList{Line: name, ListQuery: admin.ListQuery{Limit: maxListed}}); err != nil {
		p.TrustErr = "The trusted contacts could not be loaded: " + err.Error()
	} else {
		p.Trusted = t.Items
	}
	if b, err := s.api.LineBlockList(ctx, admin.LineList{Line: name, ListQuery: admin.ListQuery{Limit: maxListed}}); err != nil {
		p.BlockErr = "The blocked numbers could not be loaded: " + err.Error()
	} else {
		p.Blocked = b.Items
	}
	for _, vs := range [][]callView{p.Live, p.Recent} {
		for i := range vs {
			vs[i].Path, vs[i].CSRF = p.Path, p.CSRF
		}
	}
	s.render(w, http.StatusOK, "line", p)
}

// notYours refuses a line the token does not care for, logged as the API
// logs a 403.
func (s *site) notYours(w http.ResponseWriter, r *http.Request, wh who, line string) {
	s.log.Warn("carer page: not the token's line", zap.String("token", wh.token.Name), zap.String("line", line),
		zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr))
	s.message(w, r, http.StatusForbidden, "This is not one of your lines", "Your token does not let you see this line.")
}

// actions are the changes a line's page can make: each one admin.API
// call, and what to tell the carer when it is done.
var actions = map[string]func(ctx context.Context, a admin.API, line string, f url.Values, tok api.Token) (string, error){
	"trust": func(ctx context.Context, a admin.API, line string, f url.Values, _ api.Token) (string, error) {
		ack, err := a.TrustAdd(ctx, admin.LineNumber{Line: line, Number: f.Get("number")})
		return ack.Number + " is now a trusted contact: calls from it are always put through.", err
	},
	"untrust": func(ctx context.Context, a admin.API, line string, f url.Values, _ api.Token) (string, error) {
		ack, err := a.TrustRemove(ctx, admin.LineNumberRef{Line: line, Number: f.Get("number")})
		return ack.Number + " is no longer a trusted contact.", err
	},
	"block": func(ctx context.Context, a admin.API, line string, f url.Values, _ api.Token) (string, error) {
		ack, err := a.LineBlockAdd(ctx, admin.LineNumber{Line: line, Number: f.Get("number")})
		return "Calls from " + ack.Number + " to this line are now blocked: the phone will not ring.", err
	},
	"unblock": func(ctx context.Context, a admin.API, line string, f url.Values, _ api.Token) (string, error) {
		ack, err := a.LineBlockRemove(ctx, admin.LineNumberRef{Line: line, Number: f.Get("number")})
		return ack.Number + " is no longer blocked for this line.", err
	},
	"report": func(ctx context.Context, a admin.API, line string, f url.Values, tok api.Token) (string, error) {
		e, err := a.Report(ctx, admin.ReportIn{Line: line, Number: f.Get("number"), Reason: "reported on the carer's page by " + tok.Name})
		return e.Number + " has been reported as a scam. Everyone CleanLine protects will be warned about it.", err
	},
	"end": func(ctx context.Context, a admin.API, line string, f url.Values, _ api.Token) (string, error) {
		_, err := a.EndCall(ctx, admin.CallRef{Line: line, ID: f.Get("call")})
		return "The call has been ended. Both sides were hung up.", err
	},
}

// act makes one change on a line, for a token that cares for it, with a
// form that carries its session's token; then back to the line's page,
// which says what happened (POST, redirect, GET: a reload repeats nothing).
func (s *site) act(w http.ResponseWriter, r *http.Request) {
	op, name := r.PathValue("action"), r.PathValue("line")
	do, known := actions[op]
	if !known {
		s.message(w, r, http.StatusNotFound, "There is no such page", "")
		return
	}
	wh, ok := s.form(w, r)
	if !ok {
		return
	}
	if !wh.token.Cares(name) {
		s.notYours(w, r, wh, name)
		return
	}
	said, err := do(r.Context(), s.api, name, r.PostForm, wh.token)
	s.audit(r, wh, op, name, err)
	if err != nil {
		said = failed(op, err)
	}
	s.sessions.setFlash(wh.id, flash{Text: said, Error: err != nil})
	http.Redirect(w, r, linePath(name), http.StatusSeeOther)
}

// failed says why a change was not made, in the service's own words after
// a plain first sentence.
func failed(op string, err error) string {
	code, _ := admin.CodeOf(err)
	switch {
	case op == "end" && code == "not_found":
		return "That call had already ended."
	case code == "invalid_number":
		return "That is not a phone number CleanLine can use: " + err.Error()
	case code == "conflict":
		return "Nothing was changed: " + err.Error()
	case code == "not_found" && slices.Contains([]string{"untrust", "unblock"}, op):
		return "That number was not on the list."
	case code == "unavailable":
		return "CleanLine could not do that just now. Please try again in a minute. (" + err.Error() + ")"
	}
	return "That did not work: " + err.Error()
}
