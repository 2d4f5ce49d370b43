package load

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"
)

// Flood's counting against a peer that answers each request with 100,
// then its final response twice (a retransmission), over real UDP.
func TestFloodCountsAnswersAndRetransmissions(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			i := bytes.Index(buf[:n], []byte("\r\nCall-ID:"))
			j := bytes.Index(buf[i+2:n], []byte("\r\n"))
			callID := buf[i+2 : i+2+j]
			for _, status := range []string{"100 Trying", "404 Not Found", "404 Not Found"} {
				_, _ = pc.WriteTo([]byte("SIP/2.0 "+status+"\r\n"+string(callID)+"\r\nContent-Length: 0\r\n\r\n"), from)
			}
		}
	}()
	rep, err := Flood(context.Background(), FloodConfig{Target: pc.LocalAddr().String(), Bind: "127.0.0.1:0",
		Rate: 500, Duration: 200 * time.Millisecond, Linger: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent < 50 || rep.Answered != rep.Sent || rep.Finals["404"] != rep.Sent || rep.Retransmitted != rep.Sent || rep.Provisional != rep.Sent || rep.Other != 0 {
		t.Fatalf("report %+v: want every request answered 404 once, retransmitted once, with one 100", rep)
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil || !bytes.Contains(out.Bytes(), []byte("404:")) {
		t.Fatalf("table %q, %v", out.String(), err)
	}
}

func TestFloodNeedsTargetAndRate(t *testing.T) {
	for _, cfg := range []FloodConfig{{Rate: 1, Duration: time.Second}, {Target: "127.0.0.1:5060", Duration: time.Second}, {Target: "nowhere", Rate: 1, Duration: time.Second}} {
		if _, err := Flood(context.Background(), cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}
