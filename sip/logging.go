package sip

import (
	"context"
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// slogHandler routes sipgo's log/slog output into zap, one level down:
// sipgo logs every unparsable datagram at Error with its whole content,
// which on a public port is an attacker's choice of log volume. Its Error
// becomes our Warn is too loud still, so everything sipgo says is Debug,
// under the logger name "sipgo". Our own code logs what matters.
type slogHandler struct {
	log   *zap.Logger
	attrs []zap.Field
}

func newSlogLogger(log *zap.Logger) *slog.Logger {
	return slog.New(&slogHandler{log: log.Named("sipgo")})
}

func (h *slogHandler) Enabled(_ context.Context, _ slog.Level) bool {
	return h.log.Core().Enabled(zapcore.DebugLevel)
}

func (h *slogHandler) Handle(_ context.Context, r slog.Record) error {
	fields := make([]zap.Field, 0, len(h.attrs)+r.NumAttrs()+1)
	fields = append(fields, h.attrs...)
	fields = append(fields, zap.String("slog_level", r.Level.String()))
	r.Attrs(func(a slog.Attr) bool {
		fields = append(fields, zap.Any(a.Key, a.Value.Any()))
		return true
	})
	h.log.Debug(r.Message, fields...)
	return nil
}

func (h *slogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := &slogHandler{log: h.log, attrs: append([]zap.Field(nil), h.attrs...)}
	for _, a := range attrs {
		n.attrs = append(n.attrs, zap.Any(a.Key, a.Value.Any()))
	}
	return n
}

func (h *slogHandler) WithGroup(name string) slog.Handler {
	return &slogHandler{log: h.log.Named(name), attrs: h.attrs}
}
