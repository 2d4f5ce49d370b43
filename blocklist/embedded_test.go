package blocklist_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/blocklist/storetest"
)

func openFile(t testing.TB, path string, opts ...blocklist.FileOption) *blocklist.FileStore {
	t.Helper()
	st, err := blocklist.OpenFile(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestFileStoreSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) blocklist.Admin {
		return openFile(t, filepath.Join(t.TempDir(), "blocklist.db"))
	})
}

// TestFileStoreDurable: what an operator or a line wrote is there after a
// restart; the short-lived marks are not (documented).
func TestFileStoreDurable(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "blocklist.db")
	st := openFile(t, path)
	const n, line = "+442079460123", "home"
	if _, _, err := st.Put(ctx, []blocklist.Entry{{Number: "+4420794601", Range: true, Status: blocklist.StatusConfirmed}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Report(ctx, n, "line:home", "fake bank", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := st.Protect(ctx, "+443001234567"); err != nil {
		t.Fatal(err)
	}
	if err := st.Trust(ctx, line, "+447700900001"); err != nil {
		t.Fatal(err)
	}
	if err := st.MarkCooldown(ctx, line, n, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openFile(t, path)
	f, err := st.Lookup(ctx, blocklist.Query{Caller: n, Line: line})
	if err != nil {
		t.Fatal(err)
	}
	if f.Entry == nil || f.Entry.Reports != 1 || f.Range == nil || f.Cooldown {
		t.Fatalf("after reopen: %+v (entry and range kept, cooldown gone)", f)
	}
	if p, _ := st.Protected(ctx); len(p) != 1 {
		t.Fatalf("protected after reopen: %v", p)
	}
	if tr, _ := st.Trusted(ctx, line); len(tr) != 1 {
		t.Fatalf("trusted after reopen: %v", tr)
	}
}

// TestFileStoreLocked: a second opener gets a clear error naming the file
// within the lock timeout, in this process and in another one.
func TestFileStoreLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blocklist.db")
	openFile(t, path)
	start := time.Now()
	_, err := blocklist.OpenFile(path, blocklist.WithLockTimeout(100*time.Millisecond))
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("second open took %s", took)
	}
	if !errors.Is(err, blocklist.ErrUnavailable) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second open: %v; want ErrUnavailable naming %s", err, path)
	}

	// The same from a real second process: re-run this test binary as one.
	cmd := exec.Command(os.Args[0], "-test.run=^TestFileStoreLockedHelper$")
	cmd.Env = append(os.Environ(), "BLOCKLIST_LOCK_HELPER="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper process: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "locked-ok") {
		t.Fatalf("helper process output:\n%s", out)
	}
}

func TestFileStoreLockedHelper(t *testing.T) {
	path := os.Getenv("BLOCKLIST_LOCK_HELPER")
	if path == "" {
		return // only meaningful as the child of TestFileStoreLocked
	}
	_, err := blocklist.OpenFile(path, blocklist.WithLockTimeout(100*time.Millisecond))
	if errors.Is(err, blocklist.ErrUnavailable) && strings.Contains(err.Error(), path) {
		os.Stdout.WriteString("locked-ok\n")
		return
	}
	t.Fatalf("second process opened a locked file: %v", err)
}

// TestFileStoreLookupDoesNotWrite: the call path never commits to disk.
func TestFileStoreLookupDoesNotWrite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "blocklist.db")
	st := openFile(t, path)
	if _, _, err := st.Put(ctx, []blocklist.Entry{{Number: "+442079460123", Status: blocklist.StatusConfirmed}}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if _, err := st.Lookup(ctx, blocklist.Query{Caller: "+442079460123", Line: "home", VelocityWindow: time.Minute}); err != nil {
			t.Fatal(err)
		}
		if err := st.MarkCooldown(ctx, "home", "+442079460123", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Fatal("Lookup or MarkCooldown changed the file")
	}
}
