package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip"
)

// aCall is the events of one allowed call, as sip makes them.
func aCall(i int) []sip.Event {
	now := time.Now()
	base := sip.Event{V: sip.EventVersion, Time: now, Call: "0123456789abcdef", Line: "line", Direction: "inbound",
		Trunk: "bench", From: "sip:+447946012345@127.0.0.1", Caller: "+447946012345", Verdict: "allow",
		Reasons: []screening.Reason{}}
	evs := make([]sip.Event, 4)
	for j, typ := range []sip.EventType{sip.EventScreened, sip.EventConnected, sip.EventEnded, sip.EventCall} {
		evs[j] = base
		evs[j].Type, evs[j].Seq = typ, j+1
	}
	for _, j := range []int{2, 3} {
		evs[j].Outcome, evs[j].EndedBy, evs[j].Start = "completed", "trunk", now.Add(-time.Second)
		evs[j].Duration, evs[j].Setup, evs[j].Talk = 1000.5, 10.2, 990.3
	}
	evs[3].RTP = &sip.RTPCounts{TrunkIn: 50, TrunkOut: 50, LineIn: 50, LineOut: 50}
	return evs
}

// BenchmarkEventStoreFile is what the store sink costs per call on the
// embedded store: a typical call's four events encoded and appended to
// the JSON-lines log, in batches of 100 calls as serve gathers them.
func BenchmarkEventStoreFile(b *testing.B) {
	l, err := blocklist.OpenEventFile(filepath.Join(b.TempDir(), "cl.events"), blocklist.EventLogOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	sink := newEventStore(l)
	var batch []sip.Event
	for range 100 {
		batch = append(batch, aCall(0)...)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 100 {
		if err := sink.WriteEvents(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
}
