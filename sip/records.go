package sip

import (
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/sip/media"
)

// record writes the call's one call-record line: who called whom, what the
// screening said and why, how it ended, how long each phase took, and what
// media flowed. Called once, from end.
func (c *call) record() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var st media.RelayStats // zero for a call refused before it had media
	if c.m != nil {
		st = c.m.stats()
	}
	fields := []zap.Field{
		zap.String("outcome", c.outcome),
		zap.Stringer("ended_by", c.endedBy),
		zap.Time("start", c.start),
		zap.Duration("duration", c.stopped.Sub(c.start)),
	}
	if !c.answered.IsZero() {
		fields = append(fields,
			zap.Duration("setup", c.answered.Sub(c.start)),
			zap.Duration("talk", c.stopped.Sub(c.answered)))
	}
	if c.screened {
		reasons := make([]string, len(c.verdict.Reasons))
		for i, r := range c.verdict.Reasons {
			reasons[i] = string(r)
		}
		fields = append(fields,
			zap.String("from", c.scall.From),
			zap.String("asserted", c.scall.Asserted),
			zap.Bool("privacy", c.scall.Privacy),
			zap.Strings("reasons", reasons))
	}
	if c.dialled != "" {
		fields = append(fields, zap.String("dialled", c.dialled))
	}
	if len(c.dialClasses) > 0 {
		classes := make([]string, len(c.dialClasses))
		for i, cl := range c.dialClasses {
			classes[i] = string(cl)
		}
		fields = append(fields, zap.Strings("dial_classes", classes))
	}
	if c.barred != "" {
		fields = append(fields, zap.String("barred", string(c.barred)))
	}
	if c.choice != "" {
		fields = append(fields, zap.String("choice", c.choice))
	}
	if c.device != "" {
		fields = append(fields, zap.String("device", c.device)) // the registered device on the line's leg
	}
	fields = append(fields,
		zap.Uint64("trunk_rtp_in", st.Trunk.PacketsIn), zap.Uint64("trunk_rtp_out", st.Trunk.PacketsOut),
		zap.Uint64("line_rtp_in", st.Line.PacketsIn), zap.Uint64("line_rtp_out", st.Line.PacketsOut),
		zap.Uint64("rtp_dropped", st.Trunk.Dropped+st.Line.Dropped),
		zap.Uint64("rtp_foreign", st.Trunk.Foreign+st.Line.Foreign)) // the part from sources neither leg accepts
	c.log.Info("call", fields...)
	c.s.metrics.calls.WithLabelValues(c.dir.String(), c.outcome).Inc()
}
