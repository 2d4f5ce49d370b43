package sip

import (
	"context"
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// slogHandler routes log/slog output into zap, at the record's own level
// capped at max. sipgo logs every unparsable datagram at Error with its
// whole content, which on a public port is an attacker's choice of log
// volume; the loggers we hand sipgo cap everything at Debug, under the name
// "sipgo": our own code logs what matters.
type slogHandler struct {
	log   *zap.Logger
	max   zapcore.Level
	attrs []zap.Field
}

func newSlogLogger(log *zap.Logger) *slog.Logger {
	return slog.New(NewSlogHandler(log.Named("sipgo"), zapcore.DebugLevel))
}

// NewSlogHandler is a log/slog handler writing to log, each record at its
// own level but never above max. The daemon installs one as slog's default
// (slog.SetDefault), so what sipgo logs outside the loggers NewServer gives
// it (its package-level default, e.g. TCP connection bookkeeping) lands in
// our logs too. Library code never sets the default itself.
func NewSlogHandler(log *zap.Logger, max zapcore.Level) slog.Handler {
	return &slogHandler{log: log, max: max}
}

func zapLevel(l slog.Level, max zapcore.Level) zapcore.Level {
	z := zapcore.DebugLevel
	switch {
	case l >= slog.LevelError:
		z = zapcore.ErrorLevel
	case l >= slog.LevelWarn:
		z = zapcore.WarnLevel
	case l >= slog.LevelInfo:
		z = zapcore.InfoLevel
	}
	return min(z, max)
}

func (h *slogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return h.log.Core().Enabled(zapLevel(l, h.max))
}

func (h *slogHandler) Handle(_ context.Context, r slog.Record) error {
	fields := make([]zap.Field, 0, len(h.attrs)+r.NumAttrs()+1)
	fields = append(fields, h.attrs...)
	fields = append(fields, zap.String("slog_level", r.Level.String()))
	r.Attrs(func(a slog.Attr) bool {
		fields = append(fields, zap.Any(a.Key, a.Value.Any()))
		return true
	})
	if ce := h.log.Check(zapLevel(r.Level, h.max), r.Message); ce != nil {
		ce.Write(fields...)
	}
	return nil
}

func (h *slogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := &slogHandler{log: h.log, max: h.max, attrs: append([]zap.Field(nil), h.attrs...)}
	for _, a := range attrs {
		n.attrs = append(n.attrs, zap.Any(a.Key, a.Value.Any()))
	}
	return n
}

func (h *slogHandler) WithGroup(name string) slog.Handler {
	return &slogHandler{log: h.log.Named(name), max: h.max, attrs: h.attrs}
}
