package sip

import (
	"net"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// A box between a LAN and its provider is reached at two addresses: the
// phones reach its LAN address, the provider reaches the router's public
// address (forwarded to the box), or a second interface. Every address we
// write for a peer to use (Via sent-by, Contact, SDP c=) must be the one
// that peer can reach: a phone told the public address sends its media
// into the router's hairpin, which most home routers do not do; a
// provider told the LAN address sends its BYE nowhere. So each peer is
// told one face: local (sip.advertise, sip.media.advertise) when its IP is
// in sip.external.local_nets, external (sip.external) otherwise. Without
// sip.external there is one face and every peer is told it.
//
// A face is chosen by the peer's IP alone, for every message: the source
// of what we answer, the first hop of what we send. Its sipgo clients
// write its host in our Via; its dialog UAs keep the dialogs that began
// on it on it (their BYEs and re-INVITEs carry its Via).

// face is how cleanline presents itself to the peers on one side.
type face struct {
	name  string     // "local" or "external", for logs
	host  string     // in our Via (through cli, upCli) and Contact
	media netip.Addr // in our SDP

	cli   *sipgo.Client
	upCli *sipgo.Client // towards providers we register at: Via with rport (RFC 3581), for the NAT in between

	// Set by Start, once the listeners' ports are known.
	dua      *sipgo.DialogUA
	natDUA   *sipgo.DialogUA              // devices reached through their flow: in-dialog requests go where they answered from
	upDua    *sipgo.DialogUA              // the lines' calls through a registration, on upCli
	contacts map[string]sip.ContactHeader // "tcp", "tls" → our Contact there; UDP's is dua's
}

func newFace(ua *sipgo.UserAgent, name, host string, mediaIP netip.Addr, opts ...sipgo.ClientOption) (*face, error) {
	f := &face{name: name, host: host, media: mediaIP}
	var err error
	if f.cli, err = sipgo.NewClient(ua, append([]sipgo.ClientOption{sipgo.WithClientHostname(host)}, opts...)...); err != nil {
		return nil, err
	}
	if f.upCli, err = sipgo.NewClient(ua, append([]sipgo.ClientOption{sipgo.WithClientHostname(host), sipgo.WithClientNAT()}, opts...)...); err != nil {
		f.cli.Close()
		return nil, err
	}
	return f, nil
}

// listen sets the face's Contacts for the bound listeners: port is the
// UDP one (or the first stream listener's when there is no UDP).
func (f *face) listen(port int, addrs map[string]netip.AddrPort) {
	f.dua = &sipgo.DialogUA{
		Client:     f.cli,
		ContactHDR: sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "cleanline", Host: f.host, Port: port}},
	}
	f.natDUA = &sipgo.DialogUA{Client: f.cli, ContactHDR: f.dua.ContactHDR, RewriteContact: true}
	f.upDua = &sipgo.DialogUA{Client: f.upCli, ContactHDR: f.dua.ContactHDR}
	f.contacts = map[string]sip.ContactHeader{}
	for _, network := range []string{"tcp", "tls"} {
		if ap, ok := addrs[network]; ok {
			uri := sip.Uri{Scheme: "sip", User: "cleanline", Host: f.host, Port: int(ap.Port()), UriParams: sip.NewParams()}
			uri.UriParams.Add("transport", network)
			f.contacts[network] = sip.ContactHeader{Address: uri}
		}
	}
}

// contact is our Contact header for a dialog on transport. A peer sends
// its in-dialog requests (the BYE of D1) to it (RFC 3261 §12.1.1), so a
// dialog over TCP or TLS names that listener, with its transport.
func (f *face) contact(transport string) sip.ContactHeader {
	if ct, ok := f.contacts[strings.ToLower(transport)]; ok {
		return ct
	}
	return f.dua.ContactHDR
}

func (f *face) close() {
	f.cli.Close()
	f.upCli.Close()
}

// faceOf is the face a peer at ip is told.
func (s *Server) faceOf(ip netip.Addr) *face {
	if s.external == nil {
		return s.local
	}
	ip = ip.Unmap()
	for _, p := range s.cfg.External.localNets {
		if p.Contains(ip) {
			return s.local
		}
	}
	return s.external
}

// faceAt is the face for a peer at addr: "host", "host:port" or
// "[v6]:port", as sipgo's Source and Destination give it. A host name is
// not on the LAN (local peers are configured by IP), so it is external.
func (s *Server) faceAt(addr string) *face {
	if s.external == nil {
		return s.local
	}
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return s.external
	}
	return s.faceOf(ip)
}

// faceTo is the face of the first hop of req, a request we send: sipgo's
// Destination, which is a set destination (a flow), else the first Route
// (RFC 3261 §8.1.2), else the Request-URI.
func (s *Server) faceTo(req *sip.Request) *face { return s.faceAt(req.Destination()) }

// faceFrom is the face for the sender of req, which we answer.
func (s *Server) faceFrom(req *sip.Request) *face { return s.faceAt(req.Source()) }
