package sip

import (
	"log/slog"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// The slog adapter keeps each record's level up to the cap, drops what the
// zap core does not enable, and carries attributes and groups.
func TestSlogHandlerLevels(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	l := slog.New(NewSlogHandler(zap.New(core), zapcore.WarnLevel)).With("k", "v").WithGroup("g")
	l.Debug("dropped")
	l.Info("info")
	l.Warn("warn")
	l.Error("capped", "n", 1)
	got := logs.AllUntimed()
	want := []zapcore.Level{zapcore.InfoLevel, zapcore.WarnLevel, zapcore.WarnLevel}
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(got), len(want), got)
	}
	for i, e := range got {
		if e.Level != want[i] {
			t.Errorf("%q at %s, want %s", e.Message, e.Level, want[i])
		}
		if e.ContextMap()["k"] != "v" || e.LoggerName != "g" {
			t.Errorf("%q lost its attrs or group: %v %q", e.Message, e.ContextMap(), e.LoggerName)
		}
	}
	// What sipgo hands NewServer's loggers never rises above Debug.
	core, logs = observer.New(zapcore.DebugLevel)
	newSlogLogger(zap.New(core)).Error("garbage datagram")
	if e := logs.AllUntimed(); len(e) != 1 || e[0].Level != zapcore.DebugLevel {
		t.Fatalf("sipgo's Error: %+v, want one Debug entry", e)
	}
}
