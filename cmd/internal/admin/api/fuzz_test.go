package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzRequest: no request, whatever its path, query or body, makes the
// API panic or answer 500; every refusal is the JSON error.
func FuzzRequest(f *testing.F) {
	fx := newFixture(&testing.T{}, nil)
	for _, rt := range Routes(Handlers{}) {
		f.Add(rt.Method, pathFor(rt, "home"), "limit=2&cursor=eA", `{"number":"020 7946 0123"}`)
	}
	f.Add("GET", "/v1/check", "number=%2B44&line=home&international=maybe", "")
	f.Add("GET", "/v1/calls", "since=yesterday&limit=-1", "")
	f.Add("POST", "/v1/blocklist", "", `{"number":"1","extra":true}`)
	f.Add("POST", "/v1/blocklist/import", "name=x&reported=1", "+442079460123\n\x00\xff,,,,\n")
	f.Fuzz(func(t *testing.T, method, path, query, body string) {
		if strings.HasPrefix(path, "/debug/") || !strings.HasPrefix(path, "/") {
			return // profiles take seconds by design; a path must be one
		}
		u := &url.URL{Path: path, RawQuery: query}
		req, err := http.NewRequest(method, u.String(), strings.NewReader(body))
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			fx.mux.ServeHTTP(rec, req)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s %s?%s %q: no answer in 10 s", method, path, query, body)
		}
		if rec.Code == http.StatusInternalServerError {
			t.Fatalf("%s %s?%s %q: 500 %s", method, path, query, body, rec.Body)
		}
		if rec.Code >= 400 && strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			var eb errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error.Code == "" {
				t.Fatalf("%s %s: error body %q", method, path, rec.Body)
			}
		}
	})
}
