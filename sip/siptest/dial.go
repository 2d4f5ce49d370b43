package siptest

import (
	"context"
	"errors"
	"fmt"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/cleanline/cleanline/sip/media"
)

// Outgoing is a call the phone placed.
type Outgoing struct {
	p      *Phone
	D      *sipgo.DialogClientSession
	RTP    *RTP
	Answer *media.SessionInfo // the peer's SDP from 183/200

	cancel    context.CancelFunc
	responses chan *sip.Response
	done      chan struct{} // closed when the INVITE transaction is over
	final     *sip.Response // set before done is closed
	err       error
}

func (c *Outgoing) rtp() *RTP { return c.RTP }

// DialOptions shape an INVITE.
type DialOptions struct {
	FromUser    string       // caller ID user part (default "siptest")
	FromDisplay string       // display name
	Headers     []sip.Header // extra headers: P-Asserted-Identity, Privacy, ...
	NoSDP       bool         // send an INVITE without an offer
	Body        []byte       // replace our SDP offer with this body
	// Username and Password answer a 401 or 407 challenge (a registered
	// device's calls, a line with credentials).
	Username, Password string
}

// Dial sends an INVITE with an SDP offer from a fresh RTP socket and returns
// at once; responses arrive on Responses and the final one on Final.
func (p *Phone) Dial(ctx context.Context, uri string, o DialOptions) (*Outgoing, error) {
	var to sip.Uri
	if err := sip.ParseUri(uri, &to); err != nil {
		return nil, err
	}
	r, err := newRTP(p.IP)
	if err != nil {
		return nil, err
	}
	req := sip.NewRequest(sip.INVITE, to)
	user := o.FromUser
	if user == "" {
		user = "siptest"
	}
	from := sip.FromHeader{DisplayName: o.FromDisplay, Address: sip.Uri{Scheme: "sip", User: user, Host: p.IP.String()}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(&from)
	toH := sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: to.User, Host: to.Host, Port: to.Port}}
	req.AppendHeader(&toH)
	for _, h := range o.Headers {
		req.AppendHeader(h)
	}
	switch {
	case o.Body != nil:
		ct := sip.ContentTypeHeader("application/sdp")
		req.AppendHeader(&ct)
		req.SetBody(o.Body)
	case !o.NoSDP:
		body, err := media.BuildOffer(r.Local(), media.CodecPCMA, media.CodecPCMU, media.CodecTelephoneEvent)
		if err != nil {
			r.Close()
			return nil, err
		}
		ct := sip.ContentTypeHeader("application/sdp")
		req.AppendHeader(&ct)
		req.SetBody(body)
	}
	wctx, cancel := context.WithCancel(context.Background())
	d, err := p.dua.WriteInvite(wctx, req)
	if err != nil {
		cancel()
		r.Close()
		return nil, err
	}
	c := &Outgoing{p: p, D: d, RTP: r, cancel: cancel, responses: make(chan *sip.Response, 16), done: make(chan struct{})}
	p.mu.Lock()
	p.clients["pending:"+d.InviteRequest.CallID().Value()] = c
	p.mu.Unlock()
	go func() {
		err := d.WaitAnswer(wctx, sipgo.AnswerOptions{Username: o.Username, Password: o.Password, OnResponse: func(res *sip.Response) error {
			if len(res.Body()) > 0 {
				if si, err := media.ParseSDP(res.Body()); err == nil {
					c.Answer = si
					r.SetRemote(si.RTP)
				}
			}
			select {
			case c.responses <- res:
			default:
			}
			return nil
		}})
		var final *sip.Response
		var dr *sipgo.ErrDialogResponse
		switch {
		case err == nil:
			final = d.InviteResponse
			p.mu.Lock()
			p.clients[d.ID] = c
			p.mu.Unlock()
			_ = d.Ack(context.Background())
		case errors.As(err, &dr):
			final = dr.Res
		default:
			final = d.InviteResponse
			c.err = err
		}
		c.final = final
		close(c.done)
	}()
	_ = ctx
	return c, nil
}

// Responses delivers every response to the INVITE, provisional and final.
func (c *Outgoing) Responses() <-chan *sip.Response { return c.responses }

// WaitFinal waits for the final response (nil and an error if there was none).
func (c *Outgoing) WaitFinal(ctx context.Context) (*sip.Response, error) {
	select {
	case <-c.done:
		res := c.final
		if res == nil || res.IsProvisional() {
			return nil, fmt.Errorf("siptest: no final response: %v", c.err)
		}
		return res, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("siptest: no final response: %w", ctx.Err())
	}
}

// WaitProvisional waits for a provisional response with code.
func (c *Outgoing) WaitProvisional(ctx context.Context, code int) (*sip.Response, error) {
	for {
		select {
		case res := <-c.responses:
			if res.StatusCode == code {
				return res, nil
			}
			if !res.IsProvisional() {
				return res, fmt.Errorf("siptest: got final %d waiting for %d", res.StatusCode, code)
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("siptest: no %d: %w", code, ctx.Err())
		}
	}
}

// Cancel sends CANCEL (through WaitAnswer's context).
func (c *Outgoing) Cancel() { c.cancel() }

// Bye hangs up.
func (c *Outgoing) Bye(ctx context.Context) error { return c.D.Bye(ctx) }

// Ended is closed when the dialog ends.
func (c *Outgoing) Ended() <-chan struct{} { return c.D.Context().Done() }

// Request sends an in-dialog request (re-INVITE, UPDATE, INFO, ...) and
// returns the final response. For INVITE, a 2xx is ACKed.
func (c *Outgoing) Request(ctx context.Context, method sip.RequestMethod, body []byte, ctype string, hdrs ...sip.Header) (*sip.Response, error) {
	target := c.D.InviteRequest.Recipient
	if ct := c.D.InviteResponse.Contact(); ct != nil {
		target = ct.Address
	}
	req := sip.NewRequest(method, target)
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	if ctype != "" {
		ct := sip.ContentTypeHeader(ctype)
		req.AppendHeader(&ct)
	}
	req.SetBody(body)
	res, err := c.D.Do(ctx, req)
	if err == nil && method == sip.INVITE && res.IsSuccess() {
		ack := sip.NewRequest(sip.ACK, target)
		ack.AppendHeader(sip.HeaderClone(req.CSeq()))
		ack.CSeq().MethodName = sip.ACK
		_ = c.D.WriteRequest(ack)
	}
	return res, err
}

// ReInvite sends a re-INVITE offering our RTP address with direction dir
// ("sendonly" for hold, "sendrecv" to resume).
func (c *Outgoing) ReInvite(ctx context.Context, dir media.Direction, hdrs ...sip.Header) (*sip.Response, error) {
	b := media.NewSDPBuilder("siptest")
	body, err := b.Offer(c.RTP.Local(), dir, media.CodecPCMA, media.CodecPCMU, media.CodecTelephoneEvent)
	if err != nil {
		return nil, err
	}
	return c.Request(ctx, sip.INVITE, body, "application/sdp", hdrs...)
}
