package siptest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// RegisterOptions shape a REGISTER (RFC 3261 §10.2).
type RegisterOptions struct {
	// Registrar is where the REGISTER goes (cleanline's UDP listener).
	Registrar netip.AddrPort
	// User is the address-of-record's user part (To and From).
	User string
	// Username is the digest username; default User.
	Username string
	// Password answers the 401; empty: the 401 itself is returned.
	Password string
	// Algorithm picks the challenge to answer (SHA-256, MD5); default the
	// first one offered.
	Algorithm string
	// Contact is the Contact header's value: default <sip:User@phone>;
	// "*" for the wildcard; a URI at an address the phone does not have
	// plays a device behind NAT (its REGISTER still leaves from the phone).
	Contact string
	// Expires is the Expires header in seconds; negative leaves it out.
	Expires int
	// NoRport leaves rport (RFC 3581) out of the Via.
	NoRport bool
}

// Register sends a REGISTER from the phone's UDP socket and answers a 401
// challenge with o's credentials. It returns the final response (the 401
// when there is no password, or the answer to the credentials). A phone
// keeps one Call-ID for its registrations and a rising CSeq (RFC 3261
// §10.2.4: a refresh is the same registration).
func (p *Phone) Register(ctx context.Context, o RegisterOptions) (*sip.Response, error) {
	req := p.newRegister(o)
	res, err := p.cli.Do(ctx, req)
	if err != nil || res.StatusCode != sip.StatusUnauthorized || o.Password == "" {
		return res, err
	}
	auth, err := Answer(res, "WWW-Authenticate", o.Algorithm, "REGISTER", req.Recipient.String(), cmpOr(o.Username, o.User), o.Password)
	if err != nil {
		return nil, err
	}
	req = p.newRegister(o)
	req.AppendHeader(sip.NewHeader("Authorization", auth))
	return p.cli.Do(ctx, req)
}

// Answer computes the credentials for one of res's challenges (header
// WWW-Authenticate or Proxy-Authenticate; alg "" takes the first).
func Answer(res *sip.Response, header, alg, method, uri, username, password string) (string, error) {
	for _, h := range res.GetHeaders(header) {
		chal, err := digest.ParseChallenge(h.Value())
		if err != nil {
			return "", err
		}
		if alg != "" && !strings.EqualFold(chal.Algorithm, alg) {
			continue
		}
		var b [8]byte
		_, _ = rand.Read(b[:])
		cred, err := digest.Digest(chal, digest.Options{Method: method, URI: uri, Username: username, Password: password,
			Count: 1, Cnonce: hex.EncodeToString(b[:])})
		if err != nil {
			return "", err
		}
		return cred.String(), nil
	}
	return "", errors.New("siptest: no " + header + " challenge" + map[bool]string{true: " for " + alg}[alg != ""])
}

func (p *Phone) newRegister(o RegisterOptions) *sip.Request {
	p.mu.Lock()
	if p.regCallID == "" {
		p.regCallID = sip.GenerateTagN(16) + "@" + p.IP.String()
	}
	p.regCSeq++
	callID, cseq := p.regCallID, p.regCSeq
	p.mu.Unlock()
	host := o.Registrar.Addr().String()
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: host, Port: int(o.Registrar.Port())})
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: p.IP.String(), Port: int(p.Addr.Port()),
		Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranchN(16))
	if !o.NoRport {
		via.Params.Add("rport", "")
	}
	req.AppendHeader(via)
	aor := sip.Uri{Scheme: "sip", User: o.User, Host: host}
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor})
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.REGISTER})
	contact := o.Contact
	if contact == "" {
		contact = fmt.Sprintf("<sip:%s@%s>", o.User, p.Addr)
	}
	req.AppendHeader(sip.NewHeader("Contact", contact))
	if o.Expires >= 0 {
		req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(o.Expires)))
	}
	return req
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Options sends an out-of-dialog OPTIONS to dst from the phone's UDP
// socket, as a registered device's keep-alive, and returns the answer.
func (p *Phone) Options(ctx context.Context, dst netip.AddrPort) (*sip.Response, error) {
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: dst.Addr().String(), Port: int(dst.Port())})
	return p.Do(ctx, req)
}

// Do sends req, an out-of-dialog request the test built, from the phone's
// UDP socket (sipgo adds what it lacks: Via, From, To, Call-ID, CSeq) and
// returns the final answer.
func (p *Phone) Do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	req.SetTransport("UDP")
	return p.cli.Do(ctx, req)
}
