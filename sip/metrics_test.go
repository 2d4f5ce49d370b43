package sip

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cleanline/cleanline/sip/siptest"
)

// The metrics count what happened: one call rung and talked, one blocked,
// one stranger refused; the transit histogram holds exactly the rung call.
func TestMetricsCountCallsVerdictsAndTransit(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, withServerOpts(WithMetrics(reg)))
	talkThenHangUp(t, e)
	wantFinal(t, e.dial(callerScam), 603)
	stranger := siptest.NewPhone(t, ipStranger)
	out, err := stranger.Dial(ctxT(t, 5*time.Second), e.lineURI(), siptest.DialOptions{FromUser: callerOK})
	if err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 403)
	e.waitNoCalls()

	m := e.s.metrics
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"calls inbound completed", value(t, m.calls.WithLabelValues("inbound", outcomeCompleted)), 1},
		{"calls inbound blocked", value(t, m.calls.WithLabelValues("inbound", outcomeBlocked)), 1},
		{"verdicts allow", value(t, m.verdicts.WithLabelValues("allow")), 1},
		{"verdicts block", value(t, m.verdicts.WithLabelValues("block")), 1},
		{"refused INVITE 403", value(t, m.refused.WithLabelValues("INVITE", "403")), 1},
		{"store unavailable", value(t, m.unscreened.WithLabelValues("allow")), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	h := histogramCount(t, reg, "cleanline_invite_transit_seconds")
	if h != 1 {
		t.Errorf("transit observations = %d, want 1 (the rung call only)", h)
	}
	if s := histogramCount(t, reg, "cleanline_screen_seconds"); s != 2 {
		t.Errorf("screen observations = %d, want 2", s)
	}
	// The rung call bound two port pairs, which now rest warm; the blocked
	// call took none.
	for name, want := range map[string]float64{
		"cleanline_rtp_port_binds_total":   2,
		"cleanline_rtp_ports_warm":         2,
		"cleanline_rtp_ports_free":         float64(e.s.ports.Size()),
		"cleanline_rtp_stray_closes_total": 0,
	} {
		if got := gathered(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// gathered is the value of a gauge or counter as scraped.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	m := scraped(t, reg, name)
	if m.GetGauge() != nil {
		return m.GetGauge().GetValue()
	}
	return m.GetCounter().GetValue()
}

// scraped is the first series of metric name, as a scrape would see it.
func scraped(t *testing.T, reg *prometheus.Registry, name string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0]
		}
	}
	t.Fatalf("%s not gathered", name)
	return nil
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	return scraped(t, reg, name).GetHistogram().GetSampleCount()
}

// value reads a counter's current value.
func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
