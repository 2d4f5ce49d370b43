package sip

import (
	"net/netip"
	"sync"
)

// legRole says which of a call's dialogs a dialog ID names.
type legRole int

const (
	roleIn  legRole = iota // the dialog whose INVITE we received (we are UAS)
	roleOut                // the dialog we dialled (we are UAC)
)

type regEntry struct {
	c    *call
	role legRole
	// peers are the addresses the dialog's peer may send from: where the
	// dialog was established with, and its Contact's host.
	peers []netip.Addr
}

// registry indexes live calls by both of their dialog IDs (RFC 3261 §12:
// Call-ID, local tag, remote tag) and by line. A call is removed the moment
// it is torn down, so every later request on either dialog finds nothing and
// gets 481 (D2).
type registry struct {
	mu     sync.Mutex
	byID   map[string]regEntry
	calls  map[*call]struct{}
	byLine map[string]map[*call]struct{}
	last   map[string]string // line → E.164 of its last screened inbound caller
	// acks are dialogs whose 2xx waits for its ACK. They outlive a teardown
	// that happens meanwhile, so the ACK still completes the handshake and
	// the dialog can then be hung up properly (RFC 3261 §15: no BYE before
	// the ACK or the transaction's timeout).
	acks map[string]*call
}

func newRegistry() *registry {
	return &registry{
		byID:   map[string]regEntry{},
		calls:  map[*call]struct{}{},
		byLine: map[string]map[*call]struct{}{},
		last:   map[string]string{},
		acks:   map[string]*call{},
	}
}

// add registers a new call (before any dialog ID is known).
func (r *registry) add(c *call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[c] = struct{}{}
	m := r.byLine[c.line.Name]
	if m == nil {
		m = map[*call]struct{}{}
		r.byLine[c.line.Name] = m
	}
	m[c] = struct{}{}
}

// bind maps a dialog ID to a call whose peer sends from peers; false when
// the call is already gone.
func (r *registry) bind(id string, c *call, role legRole, peers []netip.Addr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.calls[c]; !ok || id == "" {
		return false
	}
	r.byID[id] = regEntry{c: c, role: role, peers: peers}
	c.ids = append(c.ids, id)
	return true
}

// remove forgets a call and all its dialog IDs.
func (r *registry) remove(c *call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.calls, c)
	for _, id := range c.ids {
		if e, ok := r.byID[id]; ok && e.c == c {
			delete(r.byID, id)
		}
	}
	if m := r.byLine[c.line.Name]; m != nil {
		delete(m, c)
		if len(m) == 0 {
			delete(r.byLine, c.line.Name)
		}
	}
}

func (r *registry) lookup(id string) (regEntry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.byID[id]
	return e, ok
}

// lineCalls returns the live calls of a line other than except.
func (r *registry) lineCalls(line string, except *call) []*call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*call
	for c := range r.byLine[line] {
		if c != except {
			out = append(out, c)
		}
	}
	return out
}

func (r *registry) all() []*call {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*call, 0, len(r.calls))
	for c := range r.calls {
		out = append(out, c)
	}
	return out
}

func (r *registry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// dialogs is the number of dialog IDs indexed (for leak checks).
func (r *registry) dialogs() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byID)
}

func (r *registry) setLastCaller(line, number string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last[line] = number
}

func (r *registry) lastCaller(line string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last[line]
}

// hasCallID reports whether a live call has a dialog with this Call-ID.
func (r *registry) hasCallID(callID string) bool {
	if callID == "" {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.byID {
		if cid, _, ok := cutDialogID(id); ok && cid == callID {
			return true
		}
	}
	return false
}

func (r *registry) awaitAck(c *call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.acks[c.in.ID] = c
}

func (r *registry) acked(c *call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.acks, c.in.ID)
}

// ackFor is the call whose received dialog id waits for the ACK of our 2xx.
func (r *registry) ackFor(id string) *call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.acks[id]
}

// pendingAcks is the number of 2xx still waiting for their ACK (for leak checks).
func (r *registry) pendingAcks() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.acks)
}
