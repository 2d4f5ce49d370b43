// Package limit bounds what peers on the network may hold of the process:
// connections per source address and in all, how long a connection may
// keep a message unfinished or send nothing, an accept loop that a
// descriptor shortage (EMFILE, ENFILE) pauses but never ends, and the rate
// of requests per source with an expiring ban list (Rates, as Kamailio's
// pike).
//
// It knows addresses, counters, deadlines and net.Listener, nothing of SIP:
// where a message ends is told to it by a Framer (HeaderFramer reads the
// framing of text protocols: a header block ended by an empty line, then
// a body whose length a header gives).
package limit

import (
	"net"
	"net/netip"
	"sync"
)

// Refusal reasons passed to Config.OnRefused.
const (
	RefusedPerSource = "per_source" // the source already holds PerSource connections
	RefusedMax       = "max"        // Max connections are open
)

// Conns counts open connections per source IP and in all, against limits.
// One Conns may be shared by several listeners (TCP and TLS), so that the
// limits hold over them together. The zero value is not usable: NewConns.
type Conns struct {
	perSource, max int
	exempt         func(netip.Addr) bool

	mu       sync.Mutex
	open     int
	bySource map[netip.Addr]int
}

// NewConns limits connections to perSource from one IP and max in all; a
// limit <= 0 is no limit. Connections from a source exempt says yes to
// (the peers a server knows: a flood from strangers must not lock them
// out) are counted but never refused; exempt may be nil.
func NewConns(perSource, max int, exempt func(netip.Addr) bool) *Conns {
	return &Conns{perSource: perSource, max: max, exempt: exempt, bySource: map[netip.Addr]int{}}
}

// Open is the number of connections counted now.
func (c *Conns) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open
}

// OpenFrom is the number of connections counted now from ip.
func (c *Conns) OpenFrom(ip netip.Addr) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bySource[ip.Unmap()]
}

// take counts one more connection from src, or says which limit refuses it.
func (c *Conns) take(src netip.Addr) (refused string) {
	free := c.exempt != nil && src.IsValid() && c.exempt(src)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !free && c.max > 0 && c.open >= c.max {
		return RefusedMax
	}
	if !free && c.perSource > 0 && src.IsValid() && c.bySource[src] >= c.perSource {
		return RefusedPerSource
	}
	c.open++
	if src.IsValid() {
		c.bySource[src]++
	}
	return ""
}

// release uncounts a connection take counted.
func (c *Conns) release(src netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open--
	if !src.IsValid() {
		return
	}
	if n := c.bySource[src] - 1; n > 0 {
		c.bySource[src] = n
	} else {
		delete(c.bySource, src)
	}
}

// sourceOf is the IP a connection comes from (IPv4-mapped addresses
// unmapped); the zero Addr when its address is no IP.
func sourceOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case nil:
		return netip.Addr{}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
