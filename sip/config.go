package sip

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/cleanline/cleanline/screening"
)

// ErrConfig is wrapped by Config.Validate; the message names the key.
var ErrConfig = errors.New("sip config")

// Config is the `sip:` section of cleanline's configuration file.
type Config struct {
	// Listen are the SIP listeners. Default: one UDP listener on 0.0.0.0:5060.
	Listen []Listener `yaml:"listen"`
	// Advertise is the host put in our Via and Contact headers; default: the
	// first listener's IP (which must then not be 0.0.0.0).
	Advertise string `yaml:"advertise"`
	// External is how peers outside the box's own networks reach it, when
	// that is not advertise: a router forwarding ports to the box, or a
	// second interface towards the provider (face.go). Unset: every peer
	// is told advertise and media.advertise.
	External ExternalConfig `yaml:"external"`
	// TLS is how we check the servers we connect to over TLS: a provider
	// we register at or send the lines' calls to with transport=tls.
	TLS TLSClient `yaml:"tls"`
	// UserAgent is the User-Agent/Server header value. Default "cleanline".
	UserAgent string `yaml:"user_agent"`
	// Trunks are the providers whose INVITEs are screened. An INVITE from
	// any other source (and not from a line) is answered 403.
	Trunks []Trunk `yaml:"trunks"`
	// Lines are the protected landlines behind cleanline.
	Lines []Line `yaml:"lines"`
	// Media configures the RTP relay.
	Media MediaConfig `yaml:"media"`
	// Timers bound every wait of a call.
	Timers Timers `yaml:"timers"`
	// Prompts overrides built-in prompts: name (warning, blocked, line_clear,
	// line_busy, reported, barred) → path of an 8 kHz mono 16-bit WAV file.
	Prompts map[string]string `yaml:"prompts"`
	// Limits bound what peers may hold of cleanline: connections, request
	// rates, the state kept for answered requests.
	Limits Limits `yaml:"limits"`
	// Registrar bounds the registrations of the lines' devices
	// (sip.lines[].devices; registrar.go).
	Registrar RegistrarConfig `yaml:"registrar"`

	// minSEFloor replaces RFC 4028's 90 s floor of MinSE, so that tests
	// can watch a session expire in seconds. Not configurable from YAML.
	minSEFloor time.Duration
}

// TLSClient is what a TLS server we connect to must prove. Its certificate
// must chain to CAFile's CAs (or the system's) and name the host we dial
// (the URI's host: a name, or an IP in the certificate's IP SANs); TLS 1.2
// at least. There is no way to skip the check: a provider whose
// certificate it fails is unreachable, not trusted.
type TLSClient struct {
	// CAFile is a PEM file of the CAs trusted for those certificates, for
	// a provider with a private CA. Default: the system's (Debian's
	// ca-certificates).
	CAFile string `yaml:"ca_file"`
}

// config is the tls.Config of our TLS connections: sipgo sets ServerName
// to the host dialled.
func (c TLSClient) config() (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile == "" {
		return conf, nil
	}
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, cfgErr("sip.tls.ca_file", "%v", err)
	}
	conf.RootCAs = x509.NewCertPool()
	if !conf.RootCAs.AppendCertsFromPEM(pem) {
		return nil, cfgErr("sip.tls.ca_file", "%s: no PEM certificate in it", c.CAFile)
	}
	return conf, nil
}

// ExternalConfig is the box's address as seen from outside its local
// networks (what Asterisk calls external_signaling_address and local_net).
type ExternalConfig struct {
	// Advertise is the host put in our Via and Contact for a peer outside
	// LocalNets, e.g. the router's public address. Empty: no external face.
	Advertise string `yaml:"advertise"`
	// Media is the IP put in SDP for such a peer; default Advertise, which
	// must then be an IP.
	Media string `yaml:"media"`
	// LocalNets are the networks (CIDR) whose peers are told sip.advertise
	// and media.advertise; every other peer, and one named by a host name,
	// is external. Default: loopback, the private ranges (RFC 1918, IPv6
	// unique local) and link-local.
	LocalNets []string `yaml:"local_nets"`

	localNets []netip.Prefix
	media     netip.Addr
}

// defaultLocalNets are the networks a box's LAN peers are in.
var defaultLocalNets = []string{"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "::1/128", "fc00::/7", "fe80::/10"}

// Listener is one SIP socket.
type Listener struct {
	// Network is udp, tcp or tls.
	Network string `yaml:"network"`
	// Addr is host:port to listen on, e.g. 0.0.0.0:5060.
	Addr string `yaml:"addr"`
	// CertFile and KeyFile are the PEM certificate and key (tls only).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Trunk is a SIP provider.
type Trunk struct {
	// Name identifies the trunk in logs and call records.
	Name string `yaml:"name"`
	// Sources are the IP addresses or CIDR prefixes the trunk's requests
	// come from. Required: there is no "any"; a trunk that registers
	// (Register) defaults to its registrar's and outbound proxy's addresses.
	Sources []string `yaml:"sources"`
	// TrustAssertedIdentity: this trunk's P-Asserted-Identity (RFC 3325) is
	// screened instead of From. Only for trunks inside a trust domain.
	TrustAssertedIdentity bool `yaml:"trust_asserted_identity"`
	// International marks a trunk carrying calls from abroad: a UK caller
	// ID arriving on it is spoofed (Ofcom guidance).
	International bool `yaml:"international"`
	// Outbound is where calls the lines place are sent, as a SIP URI
	// (sip:host:port;transport=udp). Lines' calls go to the first trunk
	// that has one.
	Outbound string `yaml:"outbound"`
	// AnnounceBlocked: blocked callers first hear the `blocked` prompt as
	// early media (183), then get 603.
	AnnounceBlocked bool `yaml:"announce_blocked"`
	// NAT: the trunk's media comes through NAT, from another port (or
	// address) than its SDP says. Its legs then also take media from the IP
	// its signalling came from, the first packet from there latching for the
	// call; without it only the SDP's own address is accepted (issue 12 §1).
	NAT bool `yaml:"nat"`
	// SRTP: the trunk's media is SRTP with keys in the SDP (RFC 4568, SDES):
	// our offers to it are RTP/SAVP, and its plain offers and answers are
	// refused. An RTP/SAVP offer is taken from any peer without it. The keys
	// are as private as the signalling: use it over TLS.
	SRTP bool `yaml:"srtp"`
	// Register makes the trunk a registration at the provider: cleanline
	// registers as the subscriber, and the provider's calls come to the
	// contact registered (upstream.go).
	Register *Register `yaml:"register"`

	sources []peerSource
	outURI  sip.Uri
}

// Line is one protected landline.
type Line struct {
	// Name identifies the line: the key of its trusted contacts, cooldowns
	// and policy in the store, and of its call records. Required, unique.
	Name string `yaml:"name"`
	// Numbers are the numbers (Request-URI user parts) that ring this line,
	// e.g. "+442079460123", "02079460123". The name always matches too.
	Numbers []string `yaml:"numbers"`
	// Contact is where the line is reached: sip:user@host:port. Optional
	// when the line has devices: it then rings wherever they registered
	// (and here too, when set).
	Contact string `yaml:"contact"`
	// Devices are the phones and ATAs that register to cleanline as this
	// line (RFC 3261 §10), each with its own digest credentials; an
	// inbound call rings every registered one at once (fork.go).
	Devices []LineAuth `yaml:"devices"`
	// MaxContacts bounds the line's registered contacts, all devices
	// together; a new one beyond it is refused. Default 10.
	MaxContacts int `yaml:"max_contacts"`
	// Sources are the addresses the line's own calls come from; default the
	// Contact's host. A request from there is a call placed by the line;
	// so is one from where a device's registration came from.
	Sources []string `yaml:"sources"`
	// Policy is what the line changes of screening.default_policy (dial:
	// the classes of number it may dial, among them), and its own
	// protected numbers (its bank); screening reads it.
	Policy screening.LinePolicy `yaml:"policy"`
	// Auth, when set, makes the line's device prove its credentials (digest,
	// SHA-256 or MD5) on every call it places: a forged datagram from its
	// address gets 407, not a call.
	Auth *LineAuth `yaml:"auth"`
	// NAT: the line's device is behind NAT, so its media comes from
	// another port (or address) than its SDP says. Its legs then also take
	// media from the IP its signalling came from, the first packet from
	// there latching for the call; without it only the SDP's own address is
	// accepted (issue 12 §1).
	NAT bool `yaml:"nat"`
	// SRTP: the line's phones take SRTP only (as Trunk.SRTP): every device
	// of the line is offered RTP/SAVP.
	SRTP bool `yaml:"srtp"`

	contact sip.Uri
	sources []peerSource
}

// MediaConfig configures the RTP relay.
type MediaConfig struct {
	// PortMin and PortMax bound the RTP ports (RTCP uses port+1). Each call
	// uses two ports pairs. Default 20000-20999.
	PortMin int `yaml:"port_min"`
	PortMax int `yaml:"port_max"`
	// Bind is the IP RTP sockets bind to. Default 0.0.0.0.
	Bind string `yaml:"bind"`
	// Advertise is the IP put in SDP; default Bind, or sip.advertise when
	// Bind is 0.0.0.0.
	Advertise string `yaml:"advertise"`
	// WarmPorts is how many port pairs of finished calls keep their sockets
	// open for the next calls, which then bind nothing. Each resting pair
	// holds two file descriptors and two parked goroutines. Default 4096;
	// -1 closes every pair at hang-up.
	WarmPorts int `yaml:"warm_ports"`
	// PortRest is how long a warm pair rests before reuse (sooner only when
	// no cold port can be bound). Any packet that reaches a resting pair
	// closes it: its sender still talks to an ended call. Default 2s.
	PortRest time.Duration `yaml:"port_rest"`
}

// Timers bound every wait of a call. A zero value takes the default.
type Timers struct {
	// NoAnswer: how long the line rings before the caller gets 480. Default 60s.
	NoAnswer time.Duration `yaml:"no_answer"`
	// WarningChoice: how long after the warning the line has to press a digit
	// before the call is refused. Default 15s.
	WarningChoice time.Duration `yaml:"warning_choice"`
	// MediaInactivity: a leg silent this long (no RTP nor RTCP) ends the call
	// (D6). Default 60s; negative disables.
	MediaInactivity time.Duration `yaml:"media_inactivity"`
	// SessionExpires: the RFC 4028 session interval we ask for and enforce.
	// Default 30m; negative disables session timers.
	SessionExpires time.Duration `yaml:"session_expires"`
	// MinSE: the smallest session interval we accept (RFC 4028 Min-SE).
	// Default 90s.
	MinSE time.Duration `yaml:"min_se"`
	// Bye: how long we wait for a peer to answer our BYE. Whatever the peer
	// does, our side of the call is gone at once (D1/D2). Default 5s.
	Bye time.Duration `yaml:"bye"`
}

// Limits bound what peers may hold of cleanline (package sip/limit, and
// the transactions sipgo keeps). A zero value takes the default.
type Limits struct {
	// TCPReadTimeout: a message begun on a TCP or TLS connection (or a TLS
	// handshake) must be complete within it, however slowly it trickles
	// in, or the connection is closed. Default 10s; negative disables.
	TCPReadTimeout time.Duration `yaml:"tcp_read_timeout"`
	// TCPIdleTimeout: a connection between messages that receives nothing
	// this long (a keep-alive CRLF counts) is closed. Default 120s;
	// negative disables.
	TCPIdleTimeout time.Duration `yaml:"tcp_idle_timeout"`
	// TCPPerSource: most connections one IP address may hold open over the
	// TCP and TLS listeners together; more are closed at once. Default 64;
	// -1: no limit.
	TCPPerSource int `yaml:"tcp_per_source"`
	// TCPMax: most connections open at once over the TCP and TLS listeners
	// together; more are closed at once. Keep it well below the process's
	// descriptor limit (ulimit -n), which RTP ports share. Default 4096;
	// -1: no limit.
	TCPMax int `yaml:"tcp_max"`
	// RatePerSource: requests per second a source that is no trunk's and no
	// line's may keep up (each gets only a 403); faster, beyond
	// BurstPerSource, and it is banned for BanFor: everything it sends is
	// dropped unread. Trunks and lines are never counted nor banned: their
	// address can be forged, and a ban would hand the forger their calls.
	// Default 20; -1: no limit, no bans.
	RatePerSource float64 `yaml:"rate_per_source"`
	// BurstPerSource: requests a source may send at once above
	// RatePerSource before it is banned. Default 40.
	BurstPerSource int `yaml:"burst_per_source"`
	// BanFor: how long a source over its rate is banned. Default 60s.
	BanFor time.Duration `yaml:"ban_for"`
	// RetainedTransactions: most server transactions kept over UDP after
	// their final response (RFC 3261 §17.2.1 Timer H, §17.2.2 Timer J, 32 s
	// each) to retransmit it and absorb retransmitted requests; beyond it
	// the oldest is ended early. A 2xx to an INVITE is not counted (its
	// dialog retransmits it). About 7 KB each. Default 4096 (~30 MB): at
	// 900 answers a second, about this box's ceiling, each is still kept
	// 4.5 s, through its first three retransmissions (BENCHMARKS.md "Issue
	// 12: floods"); -1: no cap.
	RetainedTransactions int `yaml:"retained_transactions"`
	// AuthFailures: wrong digest answers to REGISTER a source may send
	// (one more back each AuthLockout/AuthFailures) before it is locked
	// out for AuthLockout: then even its right answer gets 401. Default 5.
	AuthFailures int `yaml:"auth_failures"`
	// AuthLockout: how long a guesser is locked out. Default 15m.
	AuthLockout time.Duration `yaml:"auth_lockout"`
}

// Defaults fills every unset key with its default.
func (c *Config) Defaults() {
	if len(c.Listen) == 0 {
		c.Listen = []Listener{{Network: "udp", Addr: "0.0.0.0:5060"}}
	}
	if c.UserAgent == "" {
		c.UserAgent = "cleanline"
	}
	if c.Media.PortMin == 0 && c.Media.PortMax == 0 {
		c.Media.PortMin, c.Media.PortMax = 20000, 20999
	}
	if c.Media.Bind == "" {
		c.Media.Bind = "0.0.0.0"
	}
	if c.Media.WarmPorts == 0 {
		c.Media.WarmPorts = 4096
	}
	if c.Media.PortRest == 0 {
		c.Media.PortRest = 2 * time.Second
	}
	t := &c.Timers
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&t.NoAnswer, 60*time.Second)
	def(&t.WarningChoice, 15*time.Second)
	def(&t.MediaInactivity, 60*time.Second)
	def(&t.SessionExpires, 30*time.Minute)
	def(&t.MinSE, 90*time.Second)
	def(&t.Bye, 5*time.Second)
	lim := &c.Limits
	def(&lim.TCPReadTimeout, 10*time.Second)
	def(&lim.TCPIdleTimeout, 120*time.Second)
	if lim.TCPPerSource == 0 {
		lim.TCPPerSource = 64
	}
	if lim.TCPMax == 0 {
		lim.TCPMax = 4096
	}
	if lim.RatePerSource == 0 {
		lim.RatePerSource = 20
	}
	if lim.BurstPerSource == 0 {
		lim.BurstPerSource = 40
	}
	def(&lim.BanFor, time.Minute)
	if lim.RetainedTransactions == 0 {
		lim.RetainedTransactions = 4096
	}
	if lim.AuthFailures == 0 {
		lim.AuthFailures = 5
	}
	def(&lim.AuthLockout, 15*time.Minute)
	c.Registrar.defaults()
	for i := range c.Lines {
		if c.Lines[i].MaxContacts == 0 {
			c.Lines[i].MaxContacts = 10
		}
	}
}

func (x *ExternalConfig) validate() error {
	if x.Advertise == "" {
		if x.Media != "" || len(x.LocalNets) > 0 {
			return cfgErr("sip.external.advertise", "empty while sip.external has media or local_nets: say which address outside peers reach us on")
		}
		return nil
	}
	if _, err := netip.ParseAddr(x.Advertise); err != nil && strings.ContainsAny(x.Advertise, " :;<>@[]") {
		return cfgErr("sip.external.advertise", "%q: want a host name or IPv4 address, without port", x.Advertise)
	}
	m := x.Media
	if m == "" {
		m = x.Advertise
	}
	a, err := netip.ParseAddr(m)
	if err != nil {
		if x.Media == "" {
			return cfgErr("sip.external.media", "empty while sip.external.advertise %q is not an IP: say which IP outside peers send media to", x.Advertise)
		}
		return cfgErr("sip.external.media", "%q: want an IP address", x.Media)
	}
	x.media = a
	nets := x.LocalNets
	if len(nets) == 0 {
		nets = defaultLocalNets
	}
	x.localNets = x.localNets[:0]
	for i, n := range nets {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return cfgErr(fmt.Sprintf("sip.external.local_nets[%d]", i), "%q: want a network in CIDR form, e.g. 192.168.1.0/24", n)
		}
		x.localNets = append(x.localNets, p.Masked())
	}
	return nil
}

func cfgErr(key, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, key, fmt.Sprintf(format, a...))
}

// Validate checks the configuration (after Defaults) and prepares the
// parsed forms the server uses; the error names the key and what is wrong.
func (c *Config) Validate() error {
	for i, l := range c.Listen {
		key := fmt.Sprintf("sip.listen[%d]", i)
		switch l.Network {
		case "udp", "tcp":
		case "tls":
			if l.CertFile == "" || l.KeyFile == "" {
				return cfgErr(key, "tls needs cert_file and key_file")
			}
		default:
			return cfgErr(key+".network", "%q: want udp, tcp or tls", l.Network)
		}
		if _, err := netip.ParseAddrPort(l.Addr); err != nil {
			return cfgErr(key+".addr", "%q: want IP:port (%v)", l.Addr, err)
		}
	}
	adv := c.Advertise
	if adv == "" && len(c.Listen) > 0 {
		ap, _ := netip.ParseAddrPort(c.Listen[0].Addr)
		if ap.Addr().IsUnspecified() {
			return cfgErr("sip.advertise", "empty while sip.listen[0] is %s: say which address peers reach us on", c.Listen[0].Addr)
		}
	}
	if err := c.External.validate(); err != nil {
		return err
	}
	if _, err := c.TLS.config(); err != nil {
		return err
	}
	if len(c.Trunks) == 0 {
		return cfgErr("sip.trunks", "none configured: every INVITE would be refused")
	}
	names := map[string]bool{}
	for i := range c.Trunks {
		t := &c.Trunks[i]
		key := fmt.Sprintf("sip.trunks[%d]", i)
		if t.Name == "" {
			return cfgErr(key+".name", "empty")
		}
		if names["trunk:"+t.Name] {
			return cfgErr(key+".name", "%q used twice", t.Name)
		}
		names["trunk:"+t.Name] = true
		if len(t.Sources) == 0 && t.Register == nil {
			return cfgErr(key+".sources", "empty: list the trunk's IPs or CIDRs")
		}
		var err error
		if t.sources, err = parseSources(key+".sources", t.Sources); err != nil {
			return err
		}
		t.outURI = sip.Uri{}
		if t.Outbound != "" {
			if err := sip.ParseUri(t.Outbound, &t.outURI); err != nil || t.outURI.Host == "" {
				return cfgErr(key+".outbound", "%q: want a SIP URI such as sip:host:5060", t.Outbound)
			}
		}
		if t.Register != nil {
			// A copy: a configuration in force may share the pointer.
			r := *t.Register
			if err := r.validate(key+".register", c.Listen); err != nil {
				return err
			}
			t.Register = &r
			if t.Outbound == "" {
				t.outURI = *r.registrar.Clone() // the lines' calls go to the provider's domain
			}
		}
	}
	if len(c.Lines) == 0 {
		return cfgErr("sip.lines", "none configured")
	}
	for i := range c.Lines {
		l := &c.Lines[i]
		key := fmt.Sprintf("sip.lines[%d]", i)
		if l.Name == "" {
			return cfgErr(key+".name", "empty")
		}
		if names["line:"+l.Name] {
			return cfgErr(key+".name", "%q used twice", l.Name)
		}
		names["line:"+l.Name] = true
		if l.Contact == "" && len(l.Devices) == 0 {
			return cfgErr(key, "neither contact nor devices: nothing would ring")
		}
		if l.Contact != "" {
			if err := sip.ParseUri(l.Contact, &l.contact); err != nil || l.contact.Host == "" {
				return cfgErr(key+".contact", "%q: want a SIP URI such as sip:landline@192.0.2.10:5060", l.Contact)
			}
		}
		srcs := l.Sources
		if len(srcs) == 0 && l.Contact != "" {
			srcs = []string{l.contact.Host}
		}
		var err error
		if l.sources, err = parseSources(key+".sources", srcs); err != nil {
			return err
		}
		if err := c.overlapsTrunk(key, l); err != nil {
			return err
		}
		if l.Auth != nil {
			if err := l.Auth.validate(key + ".auth"); err != nil {
				return err
			}
		}
		if err := l.validateDevices(key, names); err != nil {
			return err
		}
	}
	if err := c.Registrar.validate(); err != nil {
		return err
	}
	m := c.Media
	if m.PortMin < 1024 || m.PortMax > 65535 || m.PortMax-m.PortMin < 3 {
		return cfgErr("sip.media", "port_min %d, port_max %d: want 1024 <= port_min < port_max <= 65535 with room for two port pairs", m.PortMin, m.PortMax)
	}
	if m.WarmPorts < -1 {
		return cfgErr("sip.media.warm_ports", "%d: want a count of port pairs, or -1 to close every pair at hang-up", m.WarmPorts)
	}
	if m.PortRest < 0 {
		return cfgErr("sip.media.port_rest", "%s: want a duration >= 0", m.PortRest)
	}
	if _, err := netip.ParseAddr(m.Bind); err != nil {
		return cfgErr("sip.media.bind", "%q: want an IP address", m.Bind)
	}
	if m.Advertise != "" {
		if _, err := netip.ParseAddr(m.Advertise); err != nil {
			return cfgErr("sip.media.advertise", "%q: want an IP address", m.Advertise)
		}
	}
	t := c.Timers
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"no_answer", t.NoAnswer}, {"warning_choice", t.WarningChoice}, {"bye", t.Bye}, {"min_se", t.MinSE}} {
		if d.v <= 0 {
			return cfgErr("sip.timers."+d.key, "%s: want more than 0", d.v)
		}
	}
	if t.SessionExpires > 0 && t.SessionExpires < t.MinSE {
		return cfgErr("sip.timers.session_expires", "%s is below min_se %s", t.SessionExpires, t.MinSE)
	}
	floor := 90 * time.Second
	if c.minSEFloor > 0 {
		floor = c.minSEFloor
	}
	if t.MinSE < floor {
		// RFC 4028 §5: the Min-SE value "MUST NOT be less than 90 seconds".
		return cfgErr("sip.timers.min_se", "%s: RFC 4028 forbids less than 90s", t.MinSE)
	}
	lim := c.Limits
	for _, n := range []struct {
		key string
		v   int
	}{{"tcp_per_source", lim.TCPPerSource}, {"tcp_max", lim.TCPMax}} {
		if n.v < -1 {
			return cfgErr("sip.limits."+n.key, "%d: want a count of connections, or -1 for no limit", n.v)
		}
	}
	if lim.TCPMax > 0 && lim.TCPPerSource > lim.TCPMax {
		return cfgErr("sip.limits.tcp_per_source", "%d is above tcp_max %d", lim.TCPPerSource, lim.TCPMax)
	}
	if lim.RatePerSource < 0 && lim.RatePerSource != -1 {
		return cfgErr("sip.limits.rate_per_source", "%g: want requests per second, or -1 for no limit", lim.RatePerSource)
	}
	if lim.BurstPerSource < 1 {
		return cfgErr("sip.limits.burst_per_source", "%d: want a count of requests >= 1", lim.BurstPerSource)
	}
	if lim.BanFor < 0 {
		return cfgErr("sip.limits.ban_for", "%s: want a duration > 0", lim.BanFor)
	}
	if lim.RetainedTransactions < -1 {
		return cfgErr("sip.limits.retained_transactions", "%d: want a count of transactions, or -1 for no cap", lim.RetainedTransactions)
	}
	if lim.AuthFailures < 1 {
		return cfgErr("sip.limits.auth_failures", "%d: want a count of wrong answers >= 1", lim.AuthFailures)
	}
	if lim.AuthLockout < time.Second {
		return cfgErr("sip.limits.auth_lockout", "%s: want a duration of 1s or more", lim.AuthLockout)
	}
	for name := range c.Prompts {
		switch name {
		case "warning", "blocked", "line_clear", "line_busy", "reported", "barred":
		default:
			return cfgErr("sip.prompts", "%q: want warning, blocked, line_clear, line_busy, reported or barred", name)
		}
	}
	return nil
}

// ScreeningLines are the lines as screening is to know them: the numbers
// that ring each (and the user part of its contact, which trunks may dial,
// unless lines share it), its policy and where it is configured.
func (c *Config) ScreeningLines() []screening.Line {
	users := make([]string, len(c.Lines))
	count := map[string]int{}
	for i, l := range c.Lines {
		var u sip.Uri
		if sip.ParseUri(l.Contact, &u) == nil && u.User != "" {
			users[i] = u.User
			count[u.User]++
		}
	}
	out := make([]screening.Line, len(c.Lines))
	for i, l := range c.Lines {
		numbers := append([]string{}, l.Numbers...)
		if users[i] != "" && count[users[i]] == 1 {
			numbers = append(numbers, users[i])
		}
		out[i] = screening.Line{Name: l.Name, Numbers: numbers, Policy: l.Policy, Key: fmt.Sprintf("sip.lines[%d]", i)}
	}
	return out
}

// overlapsTrunk refuses a line whose sources include a trunk's address: a
// request from there would be both a call to screen and a call the line
// places, and cleanline would have to guess which.
func (c *Config) overlapsTrunk(key string, l *Line) error {
	for _, lp := range l.sources {
		for ti := range c.Trunks {
			for _, tp := range c.Trunks[ti].sources {
				if lp.Overlaps(tp.Prefix) {
					return cfgErr(key+".sources", "%s overlaps %s of sip.trunks[%d] (%q): a request from there would be both the trunk's and the line's",
						lp, tp, ti, c.Trunks[ti].Name)
				}
			}
		}
	}
	return nil
}

// peerSource is one configured source of requests: an address or prefix, and
// the UDP port when the config gives one ("192.0.2.10:5060"), for a device
// that cannot authenticate: then a datagram from another port of the same
// host is not the device. TCP and TLS connections come from ephemeral
// ports, so over them only the address counts.
type peerSource struct {
	netip.Prefix
	port uint16
}

// has reports whether a request from src over transport comes from s.
func (s peerSource) has(src netip.AddrPort, transport string) bool {
	if !s.Contains(src.Addr()) {
		return false
	}
	return s.port == 0 || !strings.EqualFold(transport, "udp") || s.port == src.Port()
}

func (s peerSource) String() string {
	if s.port != 0 {
		return netip.AddrPortFrom(s.Addr(), s.port).String()
	}
	return s.Prefix.String()
}

func parseSources(key string, in []string) ([]peerSource, error) {
	out := make([]peerSource, 0, len(in))
	for _, s := range in {
		if ap, err := netip.ParseAddrPort(s); err == nil && ap.Port() != 0 {
			a := ap.Addr().Unmap()
			out = append(out, peerSource{netip.PrefixFrom(a, a.BitLen()), ap.Port()})
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, peerSource{Prefix: p.Masked()})
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, cfgErr(key, "%q: want an IP address, IP:port or CIDR", s)
		}
		out = append(out, peerSource{Prefix: netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())})
	}
	return out, nil
}
