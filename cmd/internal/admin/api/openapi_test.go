package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// served is the document as the server serves it, loaded and validated.
func (f *fixture) served() *openapi3.T {
	f.t.Helper()
	res := f.request("GET", "/openapi.json", "", "")
	if res.status != http.StatusOK || !strings.HasPrefix(res.header.Get("Content-Type"), "application/json") {
		f.t.Fatalf("GET /openapi.json: %d %s", res.status, res.header.Get("Content-Type"))
	}
	doc, err := openapi3.NewLoader().LoadFromData([]byte(res.body))
	if err != nil {
		f.t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		f.t.Fatalf("the served document is not valid OpenAPI 3: %v", err)
	}
	return doc
}

// Every route of the table is in the served document, and every
// operation of the document is a route the server's mux has: the same
// pattern answers it, not the catch-all.
func TestDocumentMatchesTheRoutes(t *testing.T) {
	f := newFixture(t, testTokens)
	doc := f.served()
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method, o := range item.Operations() {
			documented[method+" "+path] = true
			req, _ := http.NewRequest(method, f.srv.URL+pathFor(Route{Path: path}, "home"), nil)
			_, pattern := f.mux.Handler(req)
			want := Route{Method: method, Path: path}.Pattern()
			if pattern != want {
				t.Errorf("documented %s %s (%s) is served by %q, want %q", method, path, o.OperationID, pattern, want)
			}
		}
	}
	for _, rt := range Routes(Handlers{}) {
		if !documented[rt.Method+" "+rt.Path] {
			t.Errorf("route %s (%s %s) is not in the document", rt.ID, rt.Method, rt.Path)
		}
		o := doc.Paths.Find(rt.Path).GetOperation(rt.Method)
		if o == nil || o.OperationID != rt.ID {
			t.Errorf("route %s is documented as %v", rt.ID, o)
		}
	}
	if len(documented) != len(Routes(Handlers{})) {
		t.Errorf("%d operations documented, %d routes", len(documented), len(Routes(Handlers{})))
	}
}

// validator is a RoundTripper that holds every request and every answer
// of the API to the served document (openapi3filter), and records what it
// saw.
type validator struct {
	t      *testing.T
	router routers.Router
	next   http.RoundTripper

	mu   sync.Mutex
	seen map[string]int // operationId → answers validated
}

func newValidator(t *testing.T, f *fixture) *validator {
	router, err := legacy.NewRouter(f.served())
	if err != nil {
		t.Fatal(err)
	}
	return &validator{t: t, router: router, next: f.srv.Client().Transport, seen: map[string]int{}}
}

func (v *validator) RoundTrip(req *http.Request) (*http.Response, error) {
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		v.t.Errorf("%s %s: no documented route: %v", req.Method, req.URL, err)
		return v.next.RoundTrip(req)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if req.Header.Get("Content-Type") == "text/csv" {
		in.Options = &openapi3filter.Options{AuthenticationFunc: opts.AuthenticationFunc, ExcludeRequestBody: true} // a stream
	} else if req.Body != nil {
		b, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(b))
		check := req.Clone(req.Context())
		check.Body = io.NopCloser(bytes.NewReader(b))
		in.Request = check
	}
	if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
		v.t.Errorf("%s %s: request not as documented: %v", req.Method, req.URL, err)
	}
	res, err := v.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(res.Body)
	res.Body = io.NopCloser(bytes.NewReader(body))
	if res.Header.Get("Content-Type") == "application/x-ndjson" {
		schema := route.Operation.Responses.Status(200).Value.Content["application/x-ndjson"].Schema.Value
		sc := bufio.NewScanner(bytes.NewReader(body))
		for sc.Scan() {
			var x any
			if err := json.Unmarshal(sc.Bytes(), &x); err != nil {
				v.t.Errorf("%s: export line %q: %v", route.Operation.OperationID, sc.Text(), err)
			} else if err := schema.VisitJSON(x); err != nil {
				v.t.Errorf("%s: export line not as documented: %v", route.Operation.OperationID, err)
			}
		}
	} else {
		in.Options = opts
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: res.StatusCode,
			Header: res.Header, Body: io.NopCloser(bytes.NewReader(body)), Options: opts}
		if err := openapi3filter.ValidateResponse(req.Context(), out); err != nil {
			v.t.Errorf("%s: answer %d not as documented: %v\n%s", route.Operation.OperationID, res.StatusCode, err, body)
		}
	}
	v.mu.Lock()
	v.seen[route.Operation.OperationID]++
	v.mu.Unlock()
	return res, nil
}

// client is a Client whose traffic the validator checks.
func (v *validator) client(f *fixture, token string) *Client {
	return NewClient(f.srv.URL, secret(token), &http.Client{Transport: v})
}
