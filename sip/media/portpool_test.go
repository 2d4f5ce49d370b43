package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is the pool's clock under the test's control.
type fakeClock struct{ off atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(1e9, c.off.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.off.Add(int64(d)) }

func warmPool(t *testing.T, pairs, warm int, rest time.Duration) (*PortPool, *fakeClock) {
	t.Helper()
	p := newColdPool(t, pairs)
	clk := &fakeClock{}
	p.now = clk.now
	p.KeepWarm(warm, rest)
	t.Cleanup(func() { p.Close() })
	return p, clk
}

func ports(r *Relay) [2]int { return [2]int{r.Trunk().Port(), r.Line().Port()} }

// bindable reports whether nothing holds port any more.
func bindable(port int) bool {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// relayWorks sends one packet each way through r between two new peers.
func relayWorks(t *testing.T, r *Relay) {
	t.Helper()
	trunk, line := newPeer(t), newPeer(t)
	r.Trunk().SetRemote(trunk.addr())
	r.Line().SetRemote(line.addr())
	r.SetBridged(true)
	want := rtpBytes(t, 0, 1, 0xAAAA, bytes.Repeat([]byte{7}, 160))
	send(t, trunk.rtp, r.Trunk().LocalAddr(), want)
	if got, _, ok := recv(t, line.rtp, time.Second); !ok || !bytes.Equal(got, want) {
		t.Fatalf("trunk→line not relayed (ok=%v)", ok)
	}
	send(t, line.rtp, r.Line().LocalAddr(), want)
	if got, _, ok := recv(t, trunk.rtp, time.Second); !ok || !bytes.Equal(got, want) {
		t.Fatalf("line→trunk not relayed (ok=%v)", ok)
	}
}

func TestWarmPairsReusedOnlyAfterRest(t *testing.T) {
	const rest = 2 * time.Second
	pool, clk := warmPool(t, 8, 8, rest)
	r1 := newTestRelay(t, RelayConfig{Pool: pool})
	relayWorks(t, r1)
	old := ports(r1)
	r1.Close()
	if pool.Warm() != 2 || pool.Binds() != 2 || pool.Free() != pool.Size() {
		t.Fatalf("after Close: warm %d, binds %d, free %d of %d", pool.Warm(), pool.Binds(), pool.Free(), pool.Size())
	}
	if bindable(old[0]) || bindable(old[1]) {
		t.Fatal("a warm pair's port is not held")
	}

	clk.advance(rest - time.Millisecond)
	r2 := newTestRelay(t, RelayConfig{Pool: pool})
	if p := ports(r2); p[0] == old[0] || p[0] == old[1] || p[1] == old[0] || p[1] == old[1] {
		t.Fatalf("pairs %v reused before resting %s (were %v)", p, rest, old)
	}
	if pool.Binds() != 4 {
		t.Fatalf("binds %d, want 4", pool.Binds())
	}

	clk.advance(time.Millisecond)
	r3 := newTestRelay(t, RelayConfig{Pool: pool})
	if p := ports(r3); p != old {
		t.Fatalf("rested pairs not reused: got %v, want %v", p, old)
	}
	if pool.Binds() != 4 {
		t.Fatalf("binds %d: the warm pairs were bound again", pool.Binds())
	}
	// A taken-over pair starts from nothing: no counters, no latch.
	if st := r3.Stats(); st.Trunk.PacketsIn != 0 || st.Line.PacketsOut != 0 || st.Trunk.Latched || st.Trunk.Remote.IsValid() {
		t.Fatalf("reused pair carries the old call's state: %+v", st)
	}
	relayWorks(t, r3)
}

// D2 with warm pairs: a peer that keeps sending to an ended call's port
// closes it with its first packet, and that pair is never handed out again.
func TestD2StrayPacketClosesRestingPair(t *testing.T) {
	pool, clk := warmPool(t, 8, 8, time.Second)
	r1 := newTestRelay(t, RelayConfig{Pool: pool})
	relayWorks(t, r1)
	old := ports(r1)
	fraud := newPeer(t)
	r1.Close()

	send(t, fraud.rtp, netip.AddrPortFrom(loopback, uint16(old[0])), rtpBytes(t, 0, 99, 0xBAD, make([]byte, 160)))
	waitFor(t, "the stray to close the trunk pair", func() bool { return pool.Strays() == 1 && pool.Warm() == 1 })
	waitFor(t, "the trunk port to be released by the kernel", func() bool { return bindable(old[0]) && bindable(old[0]+1) })
	// Once closed, more packets find no socket (ICMP port unreachable).
	send(t, fraud.rtp, netip.AddrPortFrom(loopback, uint16(old[0])), rtpBytes(t, 0, 100, 0xBAD, make([]byte, 160)))

	clk.advance(time.Second)
	r2 := newTestRelay(t, RelayConfig{Pool: pool})
	if p := ports(r2); p[0] != old[1] || p[1] == old[0] {
		t.Fatalf("got pairs %v: want the quiet line pair %d warm and not the stray's %d", p, old[1], old[0])
	}
	if pool.Binds() != 3 || pool.Strays() != 1 {
		t.Fatalf("binds %d, strays %d; want 3, 1", pool.Binds(), pool.Strays())
	}
	relayWorks(t, r2)
}

// With every cold port taken, a pair that has not finished resting is
// still better than refusing the call: it is the port a pool without
// KeepWarm would have reused next.
func TestExhaustedPoolTakesUnrestedPair(t *testing.T) {
	pool, _ := warmPool(t, 2, 2, time.Hour)
	r1 := newTestRelay(t, RelayConfig{Pool: pool})
	old := ports(r1)
	r1.Close()
	r2 := newTestRelay(t, RelayConfig{Pool: pool})
	if p := ports(r2); p != old || pool.Binds() != 2 {
		t.Fatalf("got %v with %d binds, want the resting %v", p, pool.Binds(), old)
	}
	if _, err := NewRelay(RelayConfig{Pool: pool, BindIP: loopback}); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("exhausted pool: %v", err)
	}
}

func TestWarmPoolLimitAndColdPool(t *testing.T) {
	pool, _ := warmPool(t, 8, 1, 0)
	r := newTestRelay(t, RelayConfig{Pool: pool})
	p := ports(r)
	r.Close()
	if pool.Warm() != 1 || pool.Free() != pool.Size() {
		t.Fatalf("warm %d (limit 1), free %d of %d", pool.Warm(), pool.Free(), pool.Size())
	}
	if !bindable(p[1]) {
		t.Fatalf("the pair beyond the warm limit is still bound")
	}

	cold := newColdPool(t, 4)
	r = newTestRelay(t, RelayConfig{Pool: cold})
	p = ports(r)
	r.Close()
	if cold.Warm() != 0 || !bindable(p[0]) || !bindable(p[0]+1) || !bindable(p[1]) || !bindable(p[1]+1) {
		t.Fatalf("a cold pool left sockets open (warm %d)", cold.Warm())
	}
	// Close also closes the pool's resting pairs; goleak (TestMain) checks
	// their receive goroutines end.
	pool.Close()
	if pool.Warm() != 0 || !bindable(p[0]) {
		t.Fatal("Close left resting pairs open")
	}
	if pool.Free() != pool.Size() {
		t.Fatalf("free %d of %d after Close", pool.Free(), pool.Size())
	}
}

// Calls come and go on a warm pool while every trunk keeps talking after
// its call ends, each packet tagged with its call: no packet may reach
// another call's peer, every late packet closes the pair it hit, and the
// quiet line pairs are taken over (run it with -race). Calls run three at a
// time, in rounds; the pairs of a round rest until the next.
func TestWarmPairsNeverCrossCalls(t *testing.T) {
	const workers, rounds = 3, 30
	pool, clk := warmPool(t, 32, 32, time.Second)
	call := func(tag uint32) {
		r, err := NewRelay(RelayConfig{Pool: pool, BindIP: loopback})
		if err != nil {
			t.Error(err)
			return
		}
		trunk, line := newPeer(t), newPeer(t)
		defer trunk.rtp.Close()
		defer line.rtp.Close()
		r.Trunk().SetRemote(trunk.addr())
		r.Line().SetRemote(line.addr())
		r.SetBridged(true)
		to := r.Trunk().LocalAddr()
		for seq := range 5 {
			send(t, trunk.rtp, to, rtpBytes(t, 0, uint16(seq), tag, make([]byte, 20)))
		}
		for got := 0; got < 5; got++ {
			b, _, ok := recv(t, line.rtp, time.Second)
			if !ok {
				t.Errorf("call %x: %d of 5 packets relayed", tag, got)
				break
			}
			if ssrc := binary.BigEndian.Uint32(b[8:]); ssrc != tag {
				t.Errorf("call %x got call %x's packet", tag, ssrc)
			}
		}
		r.Close()
		send(t, trunk.rtp, to, rtpBytes(t, 0, 9, tag, make([]byte, 20)))
	}
	for round := range rounds {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() { call(uint32(round<<8 | w)) })
		}
		wg.Wait()
		waitFor(t, "every late packet to close its pair", func() bool { return pool.Strays() == uint64((round+1)*workers) })
		clk.advance(time.Second)
	}
	if pool.Free() != pool.Size() {
		t.Fatalf("free %d of %d", pool.Free(), pool.Size())
	}
	t.Logf("%d calls: %d pairs bound, %d closed by late packets", workers*rounds, pool.Binds(), pool.Strays())
	if pool.Binds() > uint64(workers*(rounds+1)) {
		t.Fatalf("%d pairs bound for %d calls: the quiet line pairs were not taken over", pool.Binds(), workers*rounds)
	}
}
