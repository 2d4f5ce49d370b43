package media

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Names of the default prompts (files prompts/<name>.wav).
const (
	// PromptWarning is played to the line when a suspicious caller rings,
	// before anyone is connected; it asks for 1 (connect) or 3 (report).
	PromptWarning = "warning"
	// PromptBlocked is the caller-side notice for a refused call.
	PromptBlocked = "blocked"
	// PromptLineClear answers the line-check code when no other call is
	// attached (ARCHITECTURE.md D5).
	PromptLineClear = "line_clear"
	// PromptLineBusy answers the line-check code when another call is still
	// attached to the line.
	PromptLineBusy = "line_busy"
	// PromptReported confirms a report made with 3.
	PromptReported = "reported"
	// PromptBarred tells the line that the number it dialled is barred by
	// its policy (premium rate, international...), before the refusal.
	PromptBarred = "barred"
)

// ErrUnknownPrompt is returned for a prompt name that is not in the set.
var ErrUnknownPrompt = errors.New("media: unknown prompt")

// Regenerate with prompts/generate.sh (flite rms voice, G.711 mu-law WAV).
//
//go:embed prompts/*.wav
var promptFS embed.FS

// Prompt is a piece of audio to play: 8 kHz, 16-bit, mono PCM. Samples
// must not change once the prompt has been played (its G.711 form is cached).
type Prompt struct {
	Name    string
	Samples []int16

	// The G.711 encodings are made on first use and shared by every
	// concurrent playback of the prompt.
	ulawOnce, alawOnce sync.Once
	ulaw, alaw         []byte
}

// NewPrompt wraps 8 kHz PCM samples.
func NewPrompt(name string, samples []int16) *Prompt {
	return &Prompt{Name: name, Samples: samples}
}

// Duration is the prompt's playing time.
func (p *Prompt) Duration() time.Duration {
	return time.Duration(len(p.Samples)) * time.Second / 8000
}

// encoded returns the prompt in G.711 (pt 0 or 8), padded with silence to
// whole 20 ms frames so the last packet is as long as the others.
func (p *Prompt) encoded(pt uint8) []byte {
	enc := func() []byte {
		n := (len(p.Samples) + frameSamples - 1) / frameSamples * frameSamples
		b := EncodeG711(make([]byte, 0, n), p.Samples, pt)
		pad := byte(ulawSilence)
		if pt == PayloadTypePCMA {
			pad = alawSilence
		}
		for len(b) < n {
			b = append(b, pad)
		}
		return b
	}
	if pt == PayloadTypePCMA {
		p.alawOnce.Do(func() { p.alaw = enc() })
		return p.alaw
	}
	p.ulawOnce.Do(func() { p.ulaw = enc() })
	return p.ulaw
}

// Prompts is a named set: the embedded defaults, each replaceable by an
// operator's file. Safe for concurrent use.
type Prompts struct {
	mu sync.RWMutex
	m  map[string]*Prompt
}

// DefaultPrompts loads the embedded default prompts.
func DefaultPrompts() (*Prompts, error) {
	ps := &Prompts{m: map[string]*Prompt{}}
	for _, name := range []string{PromptWarning, PromptBlocked, PromptLineClear, PromptLineBusy, PromptReported, PromptBarred} {
		b, err := promptFS.ReadFile("prompts/" + name + ".wav")
		if err != nil {
			return nil, fmt.Errorf("media: embedded prompt %s: %w", name, err)
		}
		p, err := LoadWAV(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("media: embedded prompt %s: %w", name, err)
		}
		p.Name = name
		ps.m[name] = p
	}
	return ps, nil
}

// Get returns the prompt called name.
func (ps *Prompts) Get(name string) (*Prompt, error) {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	p, ok := ps.m[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownPrompt, name)
	}
	return p, nil
}

// Override replaces (or adds) the prompt called name with an operator's
// WAV file; on error the previous prompt stays.
func (ps *Prompts) Override(name, path string) error {
	p, err := LoadPrompt(path)
	if err != nil {
		return err
	}
	p.Name = name
	ps.Set(name, p)
	return nil
}

// Set replaces (or adds) a prompt.
func (ps *Prompts) Set(name string, p *Prompt) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.m[name] = p
}

// Names lists the prompts in the set, sorted.
func (ps *Prompts) Names() []string {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	names := make([]string, 0, len(ps.m))
	for n := range ps.m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
