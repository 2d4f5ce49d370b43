package blocklist_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/blocklist/redistest"
	"github.com/cleanline/cleanline/blocklist/storetest"
)

func TestFileEventLogSuite(t *testing.T) {
	storetest.RunEvents(t, func(t *testing.T) (blocklist.EventLog, func() error) {
		st := openFile(t, filepath.Join(t.TempDir(), "cleanline.db"))
		l, err := st.EventLog(blocklist.EventLogOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return l, st.Close
	})
}

func TestRedisEventLogSuite(t *testing.T) {
	srv := redistest.Start(t)
	storetest.RunEvents(t, func(t *testing.T) (blocklist.EventLog, func() error) {
		srv.FlushAll(t)
		st := newRedis(t, blocklist.RedisOptions{Addrs: []string{srv.Addr}})
		return st.EventLog(blocklist.EventLogOptions{}), st.Close
	})
}

// The stream is one key: it works through the Cluster client.
func TestRedisClusterEventLogSuite(t *testing.T) {
	srv := redistest.StartCluster(t)
	storetest.RunEvents(t, func(t *testing.T) (blocklist.EventLog, func() error) {
		srv.FlushAll(t)
		st := newRedis(t, blocklist.RedisOptions{Addrs: []string{srv.Addr}, Cluster: true})
		return st.EventLog(blocklist.EventLogOptions{}), st.Close
	})
}

func record(i int, line string) blocklist.EventRecord {
	data, _ := json.Marshal(map[string]any{"v": 1, "n": i, "pad": fmt.Sprintf("%0200d", i)})
	return blocklist.EventRecord{Time: time.UnixMilli(1_800_000_000_000 + int64(i)).UTC(), Type: "call", Line: line,
		Call: "c" + strconv.Itoa(i), Data: data}
}

// ns reads the "n" of each record's data.
func ns(t *testing.T, recs []blocklist.EventRecord) []int {
	t.Helper()
	out := make([]int, len(recs))
	for i, r := range recs {
		var d struct{ N int }
		if err := json.Unmarshal(r.Data, &d); err != nil {
			t.Fatal(err)
		}
		out[i] = d.N
	}
	return out
}

// The embedded log rotates at FileBytes and keeps Files files: the oldest
// records go, the rest read back in order across files, paged by a cursor
// that crosses from one file to the next.
func TestFileEventLogRotates(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "cl.events")
	l, err := blocklist.OpenEventFile(dir, blocklist.EventLogOptions{FileBytes: 4096, Files: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 200 {
		if err := l.AppendEvents(ctx, []blocklist.EventRecord{record(i, "home")}); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if len(files) != 3 {
		t.Fatalf("%d files kept, want 3: %v", len(files), files)
	}
	var total int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 4096 {
			t.Errorf("%s is %d bytes, over FileBytes", f, st.Size())
		}
		total += st.Size()
	}
	var got []int
	q := blocklist.EventQuery{Limit: 5}
	for {
		p, err := l.Events(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ns(t, p.Records)...)
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
	}
	if len(got) < 20 || got[0] != 199 {
		t.Fatalf("read %v", got)
	}
	for i := range got {
		if got[i] != 199-i {
			t.Fatalf("record %d is %d, want %d: %v", i, got[i], 199-i, got)
		}
	}
	if int64(len(got))*200 > total+4096 {
		t.Errorf("%d records read from %d bytes", len(got), total)
	}
}

// A reader in another process (read-only, no lock) reads while the writer
// writes, and never sees half a line; a line torn by a crash is cut off
// when the writer opens the log again.
func TestFileEventLogReaderBesideWriterAndTornLine(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "cl.events")
	w, err := blocklist.OpenEventFile(dir, blocklist.EventLogOptions{FileBytes: 64 << 10, Files: 4})
	if err != nil {
		t.Fatal(err)
	}
	r, err := blocklist.OpenEventFile(dir, blocklist.EventLogOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AppendEvents(ctx, []blocklist.EventRecord{record(0, "home")}); err == nil {
		t.Fatal("a read-only log took a record")
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 1000 {
			if err := w.AppendEvents(ctx, []blocklist.EventRecord{record(i, "home")}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 50 {
		p, err := r.Events(ctx, blocklist.EventQuery{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		got := ns(t, p.Records)
		for i := 1; i < len(got); i++ {
			if got[i] != got[i-1]-1 {
				t.Fatalf("reader saw %v", got)
			}
		}
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of a line.
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	last := files[len(files)-1]
	f, err := os.OpenFile(last, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"time":"2027-01-15T08:00:00Z","type":"call","li`)
	f.Close()
	if p, err := r.Events(ctx, blocklist.EventQuery{Limit: 1}); err != nil || ns(t, p.Records)[0] != 999 {
		t.Fatalf("with a torn line at the end: %v %v", p, err)
	}
	w, err = blocklist.OpenEventFile(dir, blocklist.EventLogOptions{FileBytes: 64 << 10, Files: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.AppendEvents(ctx, []blocklist.EventRecord{record(1000, "home")}); err != nil {
		t.Fatal(err)
	}
	p, err := r.Events(ctx, blocklist.EventQuery{Limit: 2})
	if err != nil || !equalInts(ns(t, p.Records), []int{1000, 999}) {
		t.Fatalf("after reopening: %v %v", p, err)
	}
}

// A read-only log of a store that never wrote one is empty, not an error.
func TestFileEventLogAbsentIsEmpty(t *testing.T) {
	r, err := blocklist.OpenEventFile(filepath.Join(t.TempDir(), "none.events"), blocklist.EventLogOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Events(context.Background(), blocklist.EventQuery{})
	if err != nil || len(p.Records) != 0 {
		t.Fatalf("%+v %v", p, err)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The stream is trimmed to about Max (XADD MAXLEN ~): whole nodes go, so
// somewhat more than Max may stay, never unboundedly more.
func TestRedisEventLogTrimmed(t *testing.T) {
	srv := redistest.Start(t)
	st := newRedis(t, blocklist.RedisOptions{Addrs: []string{srv.Addr}, Prefix: "t"})
	l := st.EventLog(blocklist.EventLogOptions{Max: 300})
	ctx := context.Background()
	for i := range 20 {
		batch := make([]blocklist.EventRecord, 100)
		for j := range batch {
			batch[j] = record(i*100+j, "home")
		}
		if err := l.AppendEvents(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	n, err := srv.Do(ctx, "XLEN", "t:{events}")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := strconv.Atoi(n); got < 300 || got > 600 {
		t.Fatalf("stream holds %d entries, want about 300", got)
	}
	p, err := l.Events(ctx, blocklist.EventQuery{Limit: 3})
	if err != nil || !equalInts(ns(t, p.Records), []int{1999, 1998, 1997}) {
		t.Fatalf("%v %v", p, err)
	}
}
