package media

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// warningKeywords are the words of the police advice the warning prompt
// must get across; the test wants at least three recognised.
var warningKeywords = []string{"warning", "police", "bank", "pin", "cash", "courier", "connect", "report", "press", "hang"}

// barredKeywords are the words of the barred notice; the test wants at
// least three of them (four were heard when it was made).
var barredKeywords = []string{"sorry", "number", "cannot", "called", "line", "goodbye"}

// TestWarningPromptIntelligible plays the warning through the player and a
// relay leg over loopback UDP, decodes the G.711 that arrives, and has
// Debian's pocketsphinx (bookworm: 0.8+5prealpha, binary
// pocketsphinx_continuous with -infile, 16 kHz model) transcribe it.
func TestWarningPromptIntelligible(t *testing.T) {
	heard := transcribePrompt(t, PromptWarning, warningKeywords)
	if len(heard) < 3 {
		t.Fatalf("only %d of the warning's keywords recognised (%v), want 3", len(heard), heard)
	}
}

// TestBarredPromptIntelligible: the notice a line hears when it dials a
// number its policy bars ("this number cannot be called from this line"),
// the same way.
func TestBarredPromptIntelligible(t *testing.T) {
	heard := transcribePrompt(t, PromptBarred, barredKeywords)
	if len(heard) < 3 {
		t.Fatalf("only %d of the barred notice's keywords recognised (%v), want 3", len(heard), heard)
	}
}

// transcribePrompt plays the embedded prompt name through the player and a
// relay leg over loopback UDP, decodes the G.711 that arrives, has
// pocketsphinx transcribe it, and returns which of keywords it heard.
func transcribePrompt(t *testing.T, name string, keywords []string) []string {
	t.Helper()
	bin, err := exec.LookPath("pocketsphinx_continuous")
	if err != nil {
		if envSet("CLEANLINE_SKIP_SPEECH") {
			t.Skip("CLEANLINE_SKIP_SPEECH set and pocketsphinx_continuous not installed")
		}
		t.Fatal("pocketsphinx_continuous not on PATH: install it with `apt-get install -y pocketsphinx pocketsphinx-en-us` (or set CLEANLINE_SKIP_SPEECH=1)")
	}
	ps, err := DefaultPrompts()
	if err != nil {
		t.Fatal(err)
	}
	prompt, err := ps.Get(name)
	if err != nil {
		t.Fatal(err)
	}

	r := newTestRelay(t, RelayConfig{})
	phone := newPeer(t)
	phone.rtp.SetReadBuffer(1 << 20)
	r.Line().SetRemote(phone.addr())
	// 2 ms per 20 ms frame: ten times real time, so the 17 s warning
	// crosses the socket in under 2 s. Timestamps are as in a real call.
	pl := NewPlayer(PlayerConfig{Pacing: 2 * time.Millisecond})
	defer pl.Close()
	done := make(chan error, 1)
	go func() {
		done <- pl.Play(context.Background(), r.Line(), prompt, CodecPCMA)
	}()
	frames := (len(prompt.Samples) + 159) / 160
	var pcm []int16
	var pkt rtp.Packet
	for i := range frames {
		b, _, ok := recv(t, phone.rtp, 2*time.Second)
		if !ok {
			t.Fatalf("frame %d of %d lost", i, frames)
		}
		if err := pkt.Unmarshal(b); err != nil {
			t.Fatal(err)
		}
		pcm = DecodeG711(pcm, pkt.Payload, pkt.PayloadType)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// The en-us acoustic model is trained at 16 kHz; double the rate by
	// linear interpolation (the band above 4 kHz stays empty, as on a phone).
	up := make([]int16, 0, 2*len(pcm))
	for i, s := range pcm {
		next := s
		if i+1 < len(pcm) {
			next = pcm[i+1]
		}
		up = append(up, s, int16((int(s)+int(next))/2))
	}
	wav := filepath.Join(t.TempDir(), name+"-received.wav")
	f, err := os.Create(wav)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteWAV(f, up, 16000); err != nil {
		t.Fatal(err)
	}
	f.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-infile", wav, "-logfn", os.DevNull).Output()
	if err != nil {
		t.Fatalf("%s: %v (the model comes from pocketsphinx-en-us: install it with `apt-get install -y pocketsphinx pocketsphinx-en-us`)", bin, err)
	}
	transcript := strings.ToLower(string(out))
	var heard []string
	for _, w := range keywords {
		for _, word := range strings.Fields(transcript) {
			if word == w {
				heard = append(heard, w)
				break
			}
		}
	}
	t.Logf("transcript: %s", strings.TrimSpace(transcript))
	t.Logf("keywords recognised (%d of %d): %s", len(heard), len(keywords), strings.Join(heard, ", "))
	return heard
}
