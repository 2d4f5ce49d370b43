package blocklist_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cleanline/cleanline/blocklist"
)

// FuzzReadEventFile: whatever an events file holds (torn lines, binary,
// lines longer than any record) and whatever cursor is asked for, reading
// neither panics nor returns anything but records: an error is a bad
// cursor (ErrInvalid) or a line too long to be one (ErrUnavailable).
func FuzzReadEventFile(f *testing.F) {
	good, _ := json.Marshal(record(1, "home"))
	f.Add(append(append([]byte{}, good...), '\n'), "")
	f.Add([]byte("{\"time\":\"2027-01-01T00:00:00Z\"}\n\n\nnot json\n"+string(good)+"\n"+string(good)), "1.10")
	f.Add([]byte("\n\n\n"), "1.2")
	f.Add([]byte{}, "x")
	f.Fuzz(func(t *testing.T, content []byte, cursor string) {
		dir := filepath.Join(t.TempDir(), "cl.events")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "000001.jsonl"), content, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := blocklist.OpenEventFile(dir, blocklist.EventLogOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		q := blocklist.EventQuery{Limit: 3, Cursor: cursor}
		for range 10 {
			p, err := l.Events(context.Background(), q)
			if err != nil {
				if !errors.Is(err, blocklist.ErrInvalid) && !errors.Is(err, blocklist.ErrUnavailable) {
					t.Fatalf("error %v is neither ErrInvalid nor ErrUnavailable", err)
				}
				return
			}
			for _, r := range p.Records {
				if !json.Valid(r.Data) && len(r.Data) > 0 {
					t.Fatalf("a record with data %q", r.Data)
				}
			}
			if p.Next == "" {
				return
			}
			q.Cursor = p.Next
		}
	})
}
