package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
)

func TestBadFlagsAreOneLineUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"dial"},
		{"call", "--rate", "x", "--target", "127.0.0.1:5060"},
		{"call", "--rate", "10"},
		{"call", "--target", "127.0.0.1:5060"},
		{"call", "--target", "127.0.0.1:5060", "--rate", "10", "--steps", "1,2"},
		{"call", "--target", "127.0.0.1:5060", "--steps", "10,abc"},
		{"call", "--target", "127.0.0.1:5060", "--rate", "10", "--transport", "sctp"},
		{"call", "--target", "nohostport", "--rate", "10"},
		{"call", "--target", "127.0.0.1:5060", "--rate", "10", "--blocked-fraction", "0.1"},
		{"call", "--target", "127.0.0.1:5060", "--rate", "10", "--numbers", "/nonexistent/file"},
		{"answer", "--listen", "127.0.0.1:0", "--watch", "-1s"},
		{"answer", "--listen", "127.0.0.1:0", "extra"},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), args, &out, &errb)
		msg := errb.String()
		if code != exitUsage || strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "sipload") {
			t.Errorf("%q: exit %d, stderr %q; want %d and one line", args, code, msg, exitUsage)
		}
	}
}

func TestUnreachableTargetExits2(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"call", "--target", addr, "--rate", "10", "--probe-timeout", "600ms", "--quiet"}, &out, &errb)
	if code != exitUnreachable || strings.Count(errb.String(), "\n") != 1 || !strings.Contains(errb.String(), "unreachable") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

// Ctrl-C (a cancelled context) still prints the table of the calls so far.
func TestInterruptPrintsTable(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb bytes.Buffer
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	cancel() // interrupted before the probe got an answer from this mute socket
	code := run(ctx, []string{"call", "--target", pc.LocalAddr().String(), "--rate", "10", "--quiet"}, &out, &errb)
	if code != exitOK || !strings.Contains(out.String(), "offered/s") || !strings.Contains(out.String(), "interrupted") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}
