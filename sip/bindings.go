package sip

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// The registrar's bindings (RFC 3261 §10.3): where each registered device
// of a line is reached, until when, and where its registration came from.
// They are state, not configuration: they live on the Server, a reload
// keeps them (dropping those of a line or device it removed), and with
// sip.registrar.bindings_file they survive a restart, so that a household
// whose ATA refreshes every hour is not an hour without calls after one.

// binding is one registered contact of one device.
type binding struct {
	Line    string `json:"line"`
	Device  string `json:"device"`  // the username it authenticated as
	Contact string `json:"contact"` // the Contact URI as registered
	// Flow is where the REGISTER came from (its source address and port):
	// requests to a device behind NAT go there (RFC 3581, symmetric
	// signalling; RFC 5626's flow, without its extensions), and its calls
	// are recognised by it.
	Flow      netip.AddrPort `json:"flow"`
	Transport string         `json:"transport"` // udp, tcp or tls
	CallID    string         `json:"call_id"`
	CSeq      uint32         `json:"cseq"`
	Expires   time.Time      `json:"expires"`

	uri    sip.Uri // Contact, parsed
	misses int     // NAT keep-alives unanswered in a row (natping.go)
}

// behindNAT reports whether the device is not where its Contact says:
// the Contact's host is not the address its REGISTER came from (a private
// address, or a name), or over UDP not its port. Its media then comes
// through NAT too (the line's nat rule applies, callmedia.go).
func (b *binding) behindNAT() bool {
	a, err := netip.ParseAddr(b.uri.Host)
	if err != nil || a.Unmap() != b.Flow.Addr() {
		return true
	}
	return b.Transport == "udp" && contactPort(b.uri) != b.Flow.Port()
}

// viaFlow reports whether requests to the device go to its flow rather
// than its Contact: behind NAT, and always over TCP and TLS, whose
// connection the device opened and we reuse (RFC 5626 §5.3: a device may
// not even listen for new ones).
func (b *binding) viaFlow() bool { return b.Transport != "udp" || b.behindNAT() }

// target is the URI an INVITE to the device is sent to: its Contact, with
// the transport its registration came over.
func (b *binding) target() sip.Uri {
	u := *b.uri.Clone()
	if b.Transport != "udp" && !u.UriParams.Has("transport") {
		if u.UriParams == nil {
			u.UriParams = sip.NewParams()
		}
		u.UriParams.Add("transport", b.Transport)
	}
	return u
}

func contactPort(u sip.Uri) uint16 {
	switch {
	case u.Port > 0:
		return uint16(u.Port)
	case strings.EqualFold(u.Scheme, "sips"):
		return 5061
	}
	return 5060
}

// contactKey is a Contact as RFC 3261 §19.1.4 compares SIP URIs, for
// the parts that tell two contacts apart.
func contactKey(u sip.Uri) string {
	tp, _ := u.UriParams.Get("transport")
	return strings.ToLower(u.Scheme) + ":" + unescapeUser(u.User) + "@" + strings.ToLower(u.Host) + ":" +
		fmt.Sprint(contactPort(u)) + ";" + strings.ToLower(tp)
}

// bindingKey: a device's contact. Devices of a line never replace or
// remove each other's bindings.
func bindingKey(line, device, contact string) string {
	return line + "\x00" + device + "\x00" + contact
}

// contactChange is one Contact of a REGISTER: add or refresh it for
// expires, or remove it (0). A wildcard removes all of the device's.
type contactChange struct {
	uri      sip.Uri
	expires  time.Duration
	wildcard bool
}

// registration is what one REGISTER asks of the bindings.
type registration struct {
	line, device string
	changes      []contactChange
	callID       string
	cseq         uint32
	flow         netip.AddrPort
	transport    string
	max          int // the line's max_contacts
}

// bindings are every line's registered contacts.
type bindings struct {
	path string // bindings_file: "" keeps them in memory only
	log  *zap.Logger
	now  func() time.Time

	mu sync.Mutex
	m  map[string]*binding
	// byIP indexes m by the flow's address: every request from a source
	// that is not configured asks whether it is a device's (guard, and the
	// strangers' rate limit per datagram), and a flood must not make that
	// a scan of every binding.
	byIP map[netip.Addr]map[string]struct{}
	// saveMu orders writes of the file: the last snapshot taken is the
	// last written.
	saveMu sync.Mutex
}

func newBindings(path string, log *zap.Logger) *bindings {
	return &bindings{path: path, log: log, now: time.Now, m: map[string]*binding{}, byIP: map[netip.Addr]map[string]struct{}{}}
}

// put and del change m and its index; t.mu is held.
func (t *bindings) put(k string, b *binding) {
	t.del(k)
	t.m[k] = b
	ks := t.byIP[b.Flow.Addr()]
	if ks == nil {
		ks = map[string]struct{}{}
		t.byIP[b.Flow.Addr()] = ks
	}
	ks[k] = struct{}{}
}

func (t *bindings) del(k string) {
	b, ok := t.m[k]
	if !ok {
		return
	}
	delete(t.m, k)
	if ks := t.byIP[b.Flow.Addr()]; ks != nil {
		delete(ks, k)
		if len(ks) == 0 {
			delete(t.byIP, b.Flow.Addr())
		}
	}
}

// apply carries out a REGISTER (RFC 3261 §10.3 steps 6 and 7) all or
// nothing, and returns the line's bindings afterwards and whether any
// binding was added or removed (not only refreshed).
func (t *bindings) apply(r registration) (now []binding, changed bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at := t.now()
	t.purge(at)
	next := map[string]*binding{}
	gone := map[string]bool{}
	for _, ch := range r.changes {
		if ch.wildcard {
			for k, b := range t.m {
				if b.Line != r.line || b.Device != r.device {
					continue
				}
				// §10.3 step 6: "*" removes a binding unless it was made
				// by the same Call-ID with a CSeq this request's is not above.
				if b.CallID == r.callID && r.cseq <= b.CSeq {
					return nil, false, fmt.Errorf("%w: CSeq %d not above the binding's %d", ErrOutOfOrder, r.cseq, b.CSeq)
				}
				gone[k] = true
			}
			continue
		}
		ckey := contactKey(ch.uri)
		k := bindingKey(r.line, r.device, ckey)
		if old, ok := t.m[k]; ok && old.CallID == r.callID && r.cseq <= old.CSeq {
			// §10.3 step 7: same Call-ID, CSeq not higher: the update is
			// aborted and the request fails.
			return nil, false, fmt.Errorf("%w: CSeq %d not above the binding's %d", ErrOutOfOrder, r.cseq, old.CSeq)
		}
		if ch.expires <= 0 {
			gone[k] = true
			delete(next, k)
			continue
		}
		delete(gone, k)
		next[k] = &binding{Line: r.line, Device: r.device, Contact: ch.uri.String(), Flow: r.flow, Transport: r.transport,
			CallID: r.callID, CSeq: r.cseq, Expires: at.Add(ch.expires), uri: ch.uri}
	}
	count := 0
	for k, b := range t.m {
		if b.Line == r.line && !gone[k] && next[k] == nil {
			count++
		}
	}
	if count+len(next) > r.max {
		added := 0
		for k := range next {
			if t.m[k] == nil {
				added++
			}
		}
		if added > 0 {
			return nil, false, fmt.Errorf("%w: the line holds %d of its %d", ErrTooManyContacts, count+len(next)-added, r.max)
		}
	}
	for k := range gone {
		if t.m[k] != nil {
			changed = true
		}
		t.del(k)
	}
	for k, b := range next {
		if t.m[k] == nil {
			changed = true
		}
		t.put(k, b)
	}
	return t.lineLocked(r.line, at), changed, nil
}

// line is the live bindings of a line, oldest registration first (a
// stable order for forking and for the 200's Contacts).
func (t *bindings) line(name string) []binding {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lineLocked(name, t.now())
}

func (t *bindings) lineLocked(name string, at time.Time) []binding {
	var out []binding
	for _, b := range t.m {
		if b.Line == name && at.Before(b.Expires) {
			out = append(out, *b)
		}
	}
	slices.SortFunc(out, func(a, b binding) int { return strings.Compare(a.Contact+a.Device, b.Contact+b.Device) })
	return out
}

// Registration is a registered contact of a line's device, as operators
// see it (the admin service: `cleanline lines`, GET /v1/lines): what to
// check when a phone does not ring.
type Registration struct {
	Line      string
	Device    string // the username it authenticated as
	Contact   string // as registered
	Flow      netip.AddrPort
	Transport string // udp, tcp or tls
	BehindNAT bool   // reached through Flow, not its Contact
	Expires   time.Time
}

// Registrations are line's registered contacts in force now (every
// line's when line is ""), by line, then as forking orders them.
func (s *Server) Registrations(line string) []Registration {
	s.binds.mu.Lock()
	var bs []binding
	at := s.binds.now()
	for _, b := range s.binds.m {
		if (line == "" || b.Line == line) && at.Before(b.Expires) {
			bs = append(bs, *b)
		}
	}
	s.binds.mu.Unlock()
	slices.SortFunc(bs, func(a, b binding) int {
		return strings.Compare(a.Line+"\x00"+a.Contact+a.Device, b.Line+"\x00"+b.Contact+b.Device)
	})
	out := make([]Registration, len(bs))
	for i, b := range bs {
		out[i] = Registration{Line: b.Line, Device: b.Device, Contact: b.Contact, Flow: b.Flow, Transport: b.Transport,
			BehindNAT: b.behindNAT(), Expires: b.Expires}
	}
	return out
}

// fromFlow is the live binding whose REGISTER came from src over
// transport: a request from there is the device's.
func (t *bindings) fromFlow(src netip.AddrPort, transport string) (binding, bool) {
	tp := strings.ToLower(transport)
	t.mu.Lock()
	defer t.mu.Unlock()
	at := t.now()
	for k := range t.byIP[src.Addr()] {
		if b := t.m[k]; b.Flow == src && b.Transport == tp && at.Before(b.Expires) {
			return *b, true
		}
	}
	return binding{}, false
}

// natUDP is every live UDP binding behind NAT, by key: the ones a NAT's
// mapping may be forgotten under (natping.go). Over TCP and TLS the
// device holds its connection open itself (RFC 5626 §4.4.1).
func (t *bindings) natUDP() map[string]binding {
	t.mu.Lock()
	defer t.mu.Unlock()
	at := t.now()
	out := map[string]binding{}
	for k, b := range t.m {
		if b.Transport == "udp" && b.behindNAT() && at.Before(b.Expires) {
			out[k] = *b
		}
	}
	return out
}

// pinged records a NAT keep-alive's result for the binding b at k, and
// drops it after natPingMisses unanswered in a row; it reports whether it
// did. A binding refreshed or replaced meanwhile is left alone: its device
// was just heard from.
func (t *bindings) pinged(k string, b binding, answered bool) (dropped bool) {
	t.mu.Lock()
	cur, ok := t.m[k]
	switch {
	case !ok || cur.CallID != b.CallID || cur.CSeq != b.CSeq || cur.Flow != b.Flow:
	case answered:
		cur.misses = 0
	default:
		cur.misses++
		if dropped = cur.misses >= natPingMisses; dropped {
			t.del(k)
		}
	}
	t.mu.Unlock()
	if dropped {
		if err := t.save(); err != nil {
			t.log.Warn("registrations not saved", zap.String("file", t.path), zap.Error(err))
		}
	}
	return dropped
}

// hasIP reports whether a live binding's flow is at ip: a known source,
// exempt from the strangers' rate limit as a configured line is.
func (t *bindings) hasIP(ip netip.Addr) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	at := t.now()
	for k := range t.byIP[ip] {
		if at.Before(t.m[k].Expires) {
			return true
		}
	}
	return false
}

// count is the number of live bindings (a gauge).
func (t *bindings) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.purge(t.now())
	return len(t.m)
}

// purge forgets expired bindings; t.mu is held.
func (t *bindings) purge(at time.Time) {
	for k, b := range t.m {
		if !at.Before(b.Expires) {
			t.del(k)
		}
	}
}

// reconcile drops the bindings of lines and devices rt no longer has
// (a reload removed them, or a restart found them in the file), and those
// whose flow is now a trunk's address (its calls would be taken for the
// device's), and reports how many it dropped.
func (t *bindings) reconcile(rt *routing) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for k, b := range t.m {
		if l, _ := rt.device(b.Device); l == nil || l.Name != b.Line || rt.trunkAt(b.Flow.Addr()) {
			t.del(k)
			n++
		}
	}
	return n
}

// bindingsFile is the file's format.
type bindingsFile struct {
	Version  int       `json:"version"`
	Bindings []binding `json:"bindings"`
}

// load reads the bindings saved by an earlier run: those still live, of a
// device rt knows, over UDP (a TCP or TLS flow ended with the process that
// held its connection; such a device registers again when it reconnects).
func (t *bindings) load(rt *routing) error {
	if t.path == "" {
		return nil
	}
	data, err := os.ReadFile(t.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return cfgErr("sip.registrar.bindings_file", "%v", err)
	}
	var f bindingsFile
	if err := json.Unmarshal(data, &f); err != nil {
		// A damaged file costs the devices one refresh, not the start.
		t.log.Warn("registrations file unreadable: starting without them", zap.String("file", t.path), zap.Error(err))
		return nil
	}
	at := t.now()
	kept := 0
	t.mu.Lock()
	for _, b := range f.Bindings {
		if b.Transport != "udp" || !at.Before(b.Expires) || sip.ParseUri(b.Contact, &b.uri) != nil || !b.Flow.IsValid() {
			continue
		}
		b := b
		t.put(bindingKey(b.Line, b.Device, contactKey(b.uri)), &b)
		kept++
	}
	t.mu.Unlock()
	dropped := t.reconcile(rt)
	t.log.Info("registrations restored", zap.String("file", t.path), zap.Int("restored", kept-dropped),
		zap.Int("in_file", len(f.Bindings)))
	return nil
}

// save writes every live binding to the file, atomically (a new file
// renamed over the old one, both synced), so that a crash leaves the
// previous set or the new one.
func (t *bindings) save() error {
	if t.path == "" {
		return nil
	}
	t.saveMu.Lock()
	defer t.saveMu.Unlock()
	t.mu.Lock()
	t.purge(t.now())
	f := bindingsFile{Version: 1, Bindings: make([]binding, 0, len(t.m))}
	for _, b := range t.m {
		f.Bindings = append(f.Bindings, *b)
	}
	t.mu.Unlock()
	data, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(t.path), ".bindings-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename: no such file
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), t.path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(t.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// secondsLeft is a binding's remaining life as an Expires value.
func secondsLeft(b binding, at time.Time) int {
	return int(math.Ceil(b.Expires.Sub(at).Seconds()))
}
