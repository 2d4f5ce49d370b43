package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/cleanline/cleanline/blocklist/redistest"
)

// Issue 13's done-when: on both stores, while cleanline serve runs,
// `cleanline block add N` succeeds (on the embedded store it used to fail:
// "./cleanline.db is locked by another process") and the next call from
// N is refused with 603 without ringing the line. The block went through
// the service's API, and is in the store once the service has stopped.
func TestBlockAddWhileServing(t *testing.T) {
	srv := redistest.Start(t)
	for name, store := range map[string]string{
		"embedded": "file:" + filepath.Join(t.TempDir(), "cl.db"),
		"redis":    "redis://" + srv.Addr,
	} {
		t.Run(name, func(t *testing.T) {
			r := startServe(t, store, "", nil)
			if code, rang := r.call(t, "+442079460018"); code != 200 || !rang {
				t.Fatalf("an unblocked caller: %d, rang %v; want the line to ring and answer", code, rang)
			}
			if name == "embedded" {
				// What the CLI did before issue 13, and still does when told
				// to open the store itself: the store is serve's.
				cli(t, "block", "add", "020 7946 0555", "--store", store).expect(t, exitError, "locked by another process")
			}
			cli(t, "block", "add", "020 7946 0555", "--config", r.cfg).expect(t, exitOK, "added +442079460555 (confirmed)")
			if !strings.Contains(r.stderr.String(), "addBlocked") {
				t.Fatalf("the service did not log the block: the CLI did not go through it\n%s", r.stderr)
			}
			if code, rang := r.call(t, "+442079460555"); code != 603 || rang {
				t.Fatalf("the blocked caller: %d, rang %v; want 603 and a silent line", code, rang)
			}
			cli(t, "check", "020 7946 0555", "--config", r.cfg).expect(t, exitBlock, "block +442079460555 blocklist.confirmed")
			r.stop(t)
			// Acknowledged means stored: with no service, the CLI reads it
			// from the store itself.
			cli(t, "check", "020 7946 0555", "--config", r.cfg).expect(t, exitBlock, "blocklist.confirmed")
		})
	}
}
