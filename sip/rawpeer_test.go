package sip

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/cleanline/cleanline/sip/media"
)

// rawPeer is a SIP party without a transaction layer: it sends exactly the
// datagrams a test writes and answers nothing by itself, so it can play a
// trunk that never ACKs or a dead ATA that swallows every INVITE.
type rawPeer struct {
	t     *testing.T
	pc    net.PacketConn
	addr  netip.AddrPort
	close func() // stops the reader and closes the socket; idempotent

	mu     sync.Mutex
	msgs   []rawMsg
	notify chan struct{}
}

type rawMsg struct {
	msg  sip.Message
	from net.Addr
}

func newRawPeer(t *testing.T, ip string) *rawPeer {
	t.Helper()
	pc, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	// Room for a flood's answers while the reader parses (TestFlood*).
	_ = pc.(*net.UDPConn).SetReadBuffer(4 << 20)
	p := &rawPeer{t: t, pc: pc, addr: pc.LocalAddr().(*net.UDPAddr).AddrPort(), notify: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
			if err != nil {
				continue
			}
			p.mu.Lock()
			p.msgs = append(p.msgs, rawMsg{m, from})
			close(p.notify)
			p.notify = make(chan struct{})
			p.mu.Unlock()
		}
	}()
	var once sync.Once
	p.close = func() { once.Do(func() { pc.Close(); <-done }) }
	t.Cleanup(p.close)
	return p
}

// uri is a SIP URI for user at this peer.
func (p *rawPeer) uri(user string) string { return fmt.Sprintf("sip:%s@%s", user, p.addr) }

func (p *rawPeer) send(to net.Addr, m sip.Message) {
	p.t.Helper()
	if _, err := p.pc.WriteTo([]byte(m.String()), to); err != nil {
		p.t.Fatal(err)
	}
}

// take waits for the first message not taken yet that match accepts, and
// removes it.
func (p *rawPeer) take(ctx context.Context, what string, match func(sip.Message) bool) (rawMsg, error) {
	for {
		p.mu.Lock()
		for i, m := range p.msgs {
			if match(m.msg) {
				p.msgs = append(p.msgs[:i:i], p.msgs[i+1:]...)
				p.mu.Unlock()
				return m, nil
			}
		}
		ch := p.notify
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return rawMsg{}, fmt.Errorf("raw peer %s: no %s: %w", p.addr, what, ctx.Err())
		case <-ch:
		}
	}
}

func (p *rawPeer) request(ctx context.Context, method sip.RequestMethod) (*sip.Request, net.Addr, error) {
	m, err := p.take(ctx, string(method), func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && r.Method == method
	})
	if err != nil {
		return nil, nil, err
	}
	return m.msg.(*sip.Request), m.from, nil
}

func (p *rawPeer) response(ctx context.Context, code int) (*sip.Response, error) {
	m, err := p.take(ctx, fmt.Sprint(code), func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.StatusCode == code
	})
	if err != nil {
		return nil, err
	}
	return m.msg.(*sip.Response), nil
}

// reply answers req (to tag totag when not empty) as a UAS would, with a
// Contact at this peer.
func (p *rawPeer) reply(to net.Addr, req *sip.Request, code int, reason, totag string, body []byte) {
	p.t.Helper()
	res := sip.NewResponseFromRequest(req, code, reason, body)
	if totag != "" {
		if h := res.To(); h != nil && !h.Params.Has("tag") {
			h.Params.Add("tag", totag)
		}
	}
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "raw", Host: p.addr.Addr().String(), Port: int(p.addr.Port())}})
	if len(body) > 0 {
		res.AppendHeader(sdpType())
	}
	p.send(to, res)
}

// invite sends a trunk's INVITE from caller to the line at cleanline and
// returns it.
func (p *rawPeer) invite(to netip.AddrPort, caller string) *sip.Request {
	p.t.Helper()
	body, err := media.BuildOffer(netip.AddrPortFrom(p.addr.Addr(), 40000), media.CodecPCMA, media.CodecPCMU)
	if err != nil {
		p.t.Fatal(err)
	}
	host := p.addr.String()
	msg := fmt.Sprintf("INVITE sip:%s@%s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:%s@%s>;tag=%s\r\n"+
		"To: <sip:%s@%s>\r\n"+
		"Call-ID: %s@raw\r\n"+
		"CSeq: 1 INVITE\r\n"+
		"Contact: <sip:raw@%s>\r\n"+
		"Content-Type: application/sdp\r\n"+
		"Content-Length: %d\r\n\r\n%s",
		lineNumber, to, host, sip.GenerateTagN(12), caller, p.addr.Addr(), sip.GenerateTagN(8),
		lineNumber, to, sip.GenerateTagN(16), host, len(body), body)
	req, err := sip.ParseMessage([]byte(msg))
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.pc.WriteTo([]byte(msg), net.UDPAddrFromAddrPort(to)); err != nil {
		p.t.Fatal(err)
	}
	return req.(*sip.Request)
}
