package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/cmd/internal/admin"
)

// Client is admin.API over a running service's HTTP API: what the CLI
// uses while cleanline serve holds the store. Every method names its route
// in the table; the table says how to send it.
type Client struct {
	base   string // scheme://host:port
	token  string
	http   *http.Client
	routes map[string]Route
}

var _ admin.API = (*Client)(nil)

// NewClient calls the API at base (http://127.0.0.1:9090) with token
// (none: "") through hc (nil: a client of its own).
func NewClient(base, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{}
	}
	c := &Client{base: strings.TrimSuffix(base, "/"), token: token, http: hc, routes: map[string]Route{}}
	for _, rt := range Routes(Handlers{}) {
		c.routes[rt.ID] = rt
	}
	return c
}

// Base is the service's address, for messages.
func (c *Client) Base() string { return c.base }

// do sends in by route id and returns the answer's body (2xx), or the
// error the service answered with, as the service's own sentinel.
func (c *Client) do(ctx context.Context, id string, in any) (*http.Response, error) {
	rt, ok := c.routes[id]
	if !ok {
		return nil, fmt.Errorf("api: no route %q", id) // a bug in the Client
	}
	req, err := encode(ctx, c.base, rt, in)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, admin.FromCode("unavailable", fmt.Sprintf("the service at %s did not answer: %v", c.base, err))
	}
	if res.StatusCode/100 == 2 {
		return res, nil
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, maxBody))
	var eb errorBody
	if json.Unmarshal(b, &eb) != nil || eb.Error.Code == "" {
		return nil, admin.FromCode("internal", fmt.Sprintf("the service at %s answered %s: %.200s", c.base, res.Status, b))
	}
	return nil, admin.FromCode(eb.Error.Code, eb.Error.Message)
}

// call is do for a JSON answer.
func call[O any](ctx context.Context, c *Client, id string, in any) (O, error) {
	var out O
	res, err := c.do(ctx, id, in)
	if err != nil {
		return out, err
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return out, admin.FromCode("unavailable", fmt.Sprintf("the service at %s: reading its answer: %v", c.base, err))
	}
	return out, nil
}

// lineOr is route id when the request names a line, else other.
func lineOr(line, id, other string) string {
	if line != "" {
		return id
	}
	return other
}

func (c *Client) BlockAdd(ctx context.Context, in admin.BlockAdd) (admin.BlockAdded, error) {
	return call[admin.BlockAdded](ctx, c, "addBlocked", in)
}

func (c *Client) BlockRemove(ctx context.Context, in admin.NumberRef) (admin.Ack, error) {
	return call[admin.Ack](ctx, c, "removeBlocked", in)
}

func (c *Client) BlockGet(ctx context.Context, in admin.NumberRef) (blocklist.Entry, error) {
	return call[blocklist.Entry](ctx, c, "getBlocked", in)
}

func (c *Client) BlockList(ctx context.Context, in admin.ListQuery) (admin.Page[blocklist.Entry], error) {
	return call[admin.Page[blocklist.Entry]](ctx, c, "listBlocked", in)
}

// BlockExport reads the export stream, one entry a line.
func (c *Client) BlockExport(ctx context.Context, fn func(blocklist.Entry) error) error {
	res, err := c.do(ctx, "exportBlocklist", struct{}{})
	if err != nil {
		return err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxBody)
	for sc.Scan() {
		var e blocklist.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return admin.FromCode("unavailable", fmt.Sprintf("the service at %s: the export was cut short: %v", c.base, err))
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return admin.FromCode("unavailable", fmt.Sprintf("the service at %s: the export was cut short: %v", c.base, err))
	}
	return nil
}

func (c *Client) Report(ctx context.Context, in admin.ReportIn) (blocklist.Entry, error) {
	return call[blocklist.Entry](ctx, c, lineOr(in.Line, "reportForLine", "report"), in)
}

func (c *Client) Import(ctx context.Context, in admin.ImportIn) (admin.Imported, error) {
	return call[admin.Imported](ctx, c, "importBlocklist", in)
}

func (c *Client) ProtectAdd(ctx context.Context, in admin.NumberIn) (admin.Ack, error) {
	return call[admin.Ack](ctx, c, "addProtected", in)
}

func (c *Client) ProtectRemove(ctx context.Context, in admin.NumberRef) (admin.Ack, error) {
	return call[admin.Ack](ctx, c, "removeProtected", in)
}

func (c *Client) ProtectList(ctx context.Context, in admin.ListQuery) (admin.Page[string], error) {
	return call[admin.Page[string]](ctx, c, "listProtected", in)
}

func (c *Client) TrustAdd(ctx context.Context, in admin.LineNumber) (admin.Ack, error) {
	return call[admin.Ack](ctx, c, "addTrusted", in)
}

func (c *Client) TrustRemove(ctx context.Context, in admin.LineNumberRef) (admin.Ack, error) {
	return call[admin.Ack](ctx, c, "removeTrusted", in)
}

func (c *Client) TrustList(ctx context.Context, in admin.LineList) (admin.Page[string], error) {
	return call[admin.Page[string]](ctx, c, "listTrusted", in)
}

func (c *Client) LineBlockAdd(ctx context.Context, in admin.LineNumber) (admin.Ack, error) {
	return call[admin.Ack](ctx, c, "addLineBlocked", in)
}

func (c *Client) LineBlockRemove(ctx context.Context, in admin.LineNumberRef) (admin.Ack, error) {
	return call[admin.Ack](ctx, c, "removeLineBlocked", in)
}

func (c *Client) LineBlockList(ctx context.Context, in admin.LineList) (admin.Page[string], error) {
	return call[admin.Page[string]](ctx, c, "listLineBlocked", in)
}

func (c *Client) Check(ctx context.Context, in admin.CheckIn) (admin.CheckResult, error) {
	return call[admin.CheckResult](ctx, c, "check", in)
}

func (c *Client) CheckDial(ctx context.Context, in admin.DialIn) (admin.DialResult, error) {
	return call[admin.DialResult](ctx, c, "checkDial", in)
}

func (c *Client) Lines(ctx context.Context, in admin.ListQuery) (admin.Page[admin.LineInfo], error) {
	return call[admin.Page[admin.LineInfo]](ctx, c, "listLines", in)
}

func (c *Client) Line(ctx context.Context, in admin.LineRef) (admin.LineInfo, error) {
	return call[admin.LineInfo](ctx, c, "getLine", in)
}

func (c *Client) LiveCalls(ctx context.Context, in admin.LiveQuery) (admin.Page[admin.LiveCall], error) {
	return call[admin.Page[admin.LiveCall]](ctx, c, lineOr(in.Line, "lineLiveCalls", "liveCalls"), in)
}

func (c *Client) EndCall(ctx context.Context, in admin.CallRef) (admin.Ack, error) {
	return call[admin.Ack](ctx, c, lineOr(in.Line, "endLineCall", "endCall"), in)
}

func (c *Client) RecentCalls(ctx context.Context, in admin.RecentQuery) (admin.Page[admin.Record], error) {
	return call[admin.Page[admin.Record]](ctx, c, lineOr(in.Line, "lineRecentCalls", "recentCalls"), in)
}

func (c *Client) Reload(ctx context.Context, in admin.ReloadIn) (admin.Ack, error) {
	return call[admin.Ack](ctx, c, "reload", in)
}

func (c *Client) Upstream(ctx context.Context, in admin.ListQuery) (admin.Page[admin.UpstreamInfo], error) {
	return call[admin.Page[admin.UpstreamInfo]](ctx, c, "listUpstream", in)
}
