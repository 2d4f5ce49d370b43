package sip

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip/limit"
	"github.com/cleanline/cleanline/sip/media"
)

// Metrics are the B2BUA's counters and latency histograms, registered on a
// Prometheus registry the caller owns (no global registry: two servers in
// one test binary must not collide).
type Metrics struct {
	calls    *prometheus.CounterVec // by direction and outcome, at the call record
	verdicts *prometheus.CounterVec // by action
	// unscreened counts calls whose verdict came without the store's answer
	// (store.unavailable): rung (open), warned (warn) or deferred (retry).
	unscreened *prometheus.CounterVec
	refused    *prometheus.CounterVec // requests refused outside a call, by method and status
	barred     *prometheus.CounterVec // lines' calls refused by their dial policy, by class
	// transit is INVITE received → INVITE sent to the line: what cleanline
	// adds to post-dial delay (issue 5's target: p99 < 2 ms).
	transit prometheus.Histogram
	screen  prometheus.Histogram // Screen, store round trip included
	// TCP and TLS listeners (package sip/limit), by transport (tcp, tls).
	tcpRefused      *prometheus.CounterVec // connections closed at once by a limit (per_source, max)
	tcpTimeouts     *prometheus.CounterVec // connections closed by a bound (read, idle, handshake)
	tcpAcceptErrors *prometheus.CounterVec // Accept errors survived (EMFILE...)
	// foreign counts media packets dropped for their source (issue 12 §1),
	// by side; foreignBy holds its two children, resolved once, so the
	// per-packet increment is an atomic add.
	foreign   *prometheus.CounterVec
	foreignBy [2]prometheus.Counter // by media.Side
	// What people heard and chose (issue 13).
	choices *prometheus.CounterVec // warned calls by the person's choice
	prompts *prometheus.CounterVec // prompts played, by name
	// Call events (events.go): produced by type (children resolved once),
	// and lost on their way to a sink (eventsink.go), by sink and reason.
	eventsTotal   *prometheus.CounterVec
	events        map[EventType]prometheus.Counter
	eventsDropped *prometheus.CounterVec
	// Floods (flood.go): what strangers over sip.limits.rate_per_source
	// sent that was dropped unread, by transport, and the bans imposed.
	rateDropped *prometheus.CounterVec
	bans        prometheus.Counter
	// Digest authentication (auth.go, registrar.go): wrong answers by
	// method, and the sources locked out for them.
	authFailures *prometheus.CounterVec
	authLockouts prometheus.Counter
	// Keep-alives to devices behind NAT (natping.go), by result, and the
	// registrations they dropped.
	natPings   *prometheus.CounterVec
	natDropped prometheus.Counter
	up         upMetrics // the trunks' registrations at their providers (upstream.go)
}

// latencyBuckets resolve the 2 ms budget finely and still place a
// saturated server's tail (seconds).
var latencyBuckets = []float64{
	.0001, .00025, .0005, .00075, .001, .0015, .002, .003, .005, .0075,
	.01, .025, .05, .1, .25, .5, 1, 2.5,
}

// NewMetrics registers cleanline's metrics on reg; a nil reg keeps them
// unregistered (counted, never exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanline_calls_total",
			Help: "Calls ended, by direction (inbound, outbound) and outcome as in call records.",
		}, []string{"direction", "outcome"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanline_verdicts_total",
			Help: "Screening verdicts on inbound calls, by action (allow, warn, block, defer).",
		}, []string{"action"}),
		unscreened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanline_store_unavailable_total",
			Help: "Inbound calls screened without the store's answer (store_deadline missed), by the action store_failure chose.",
		}, []string{"action"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanline_requests_refused_total",
			Help: "Requests refused outside a call's own responses (unknown source 403, malformed 400, no dialog 481, shutting down 503...), by method and SIP status.",
		}, []string{"method", "status"}),
		barred: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanline_dials_barred_total",
			Help: "Calls a line placed to a number its policy bars, refused before reaching the trunk, by class (premium_rate, satellite, personal, shared_cost, international, service_code).",
		}, []string{"class"}),
		transit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cleanline_invite_transit_seconds",
			Help:    "Inbound calls rung: from the caller's INVITE reaching cleanline's handler to the INVITE to the line leaving it.",
			Buckets: latencyBuckets,
		}),
		screen: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cleanline_screen_seconds",
			Help:    "Screening time per inbound call, store lookup included.",
			Buckets: latencyBuckets,
		}),
		tcpRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanline_tcp_connections_refused_total",
			Help: "TCP and TLS connections closed as soon as accepted because a limit was reached, by transport and limit (per_source: sip.limits.tcp_per_source, max: sip.limits.tcp_max).",
		}, []string{"transport", "limit"}),
		tcpTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanline_tcp_connections_timed_out_total",
			Help: "TCP and TLS connections closed by a bound, by transport and kind (read: a message unfinished within sip.limits.tcp_read_timeout, handshake: a TLS handshake likewise, idle: nothing for sip.limits.tcp_idle_timeout).",
		}, []string{"transport", "kind"}),
		tcpAcceptErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanline_tcp_accept_errors_total",
			Help: "Errors accepting TCP and TLS connections (EMFILE when descriptors run out...), after each of which the listener waits and accepts again, by transport.",
		}, []string{"transport"}),
		foreign: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanline_rtp_foreign_dropped_total",
			Help: "RTP and RTCP packets dropped because they came from a source the call's leg does not accept (not its peer's SDP address, nor for a peer behind NAT its latched source), by side (trunk, line): spoofed or stale media.",
		}, []string{"side"}),
		rateDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanline_requests_rate_limited_total",
			Help: "Datagrams (UDP) and stream reads (TCP, TLS) dropped unread because their source was banned for exceeding sip.limits.rate_per_source, by transport.",
		}, []string{"transport"}),
		bans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanline_source_bans_total",
			Help: "Sources banned for sip.limits.ban_for because they exceeded sip.limits.rate_per_source (trunks and lines are never banned).",
		}),
	}
	m.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cleanline_auth_failures_total",
		Help: "Digest answers that did not prove a password (unknown username, wrong password, replayed or moved answer), by method (REGISTER: a device; INVITE: a line's or a device's call).",
	}, []string{"method"})
	m.authLockouts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cleanline_auth_lockouts_total",
		Help: "Sources locked out for sip.limits.auth_lockout after sip.limits.auth_failures wrong answers to REGISTER.",
	})
	m.natPings = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cleanline_registrar_nat_keepalives_total",
		Help: "OPTIONS keep-alives sent to devices registered from behind NAT over UDP (sip.registrar.nat_keepalive), by result (answered, unanswered).",
	}, []string{"result"})
	for _, r := range []string{"answered", "unanswered"} {
		m.natPings.WithLabelValues(r) // both series from the start: a rate of 0 is news too
	}
	m.natDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cleanline_registrar_nat_dropped_total",
		Help: "Registrations dropped because their device behind NAT answered no keep-alive 3 times in a row.",
	})
	m.up = newUpMetrics(reg)
	m.choices = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cleanline_warned_choices_total",
		Help: "Warned calls the line answered, by the person's choice after the warning: connect (pressed 1), report (pressed 3), hang_up, timeout (nothing within sip.timers.warning_choice).",
	}, []string{"choice"})
	m.prompts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cleanline_prompts_played_total",
		Help: "Prompts begun, by name (warning, blocked, line_clear, line_busy, reported, barred).",
	}, []string{"prompt"})
	m.eventsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cleanline_events_total",
		Help: "Call events produced, by type (screened, warned, choice, connected, refused, reported, line_check, barred, ended, call).",
	}, []string{"type"})
	m.eventsDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cleanline_events_dropped_total",
		Help: "Call events lost on their way to a sink (store, webhooks), by sink and reason: queue_full (the sink fell behind; the call path never waits) or sink_error (the sink failed to take a batch).",
	}, []string{"sink", "reason"})
	m.events = make(map[EventType]prometheus.Counter, len(eventTypes))
	for _, t := range eventTypes {
		m.events[t] = m.eventsTotal.WithLabelValues(string(t))
	}
	// Series that exist from the start at 0, so that a dashboard's rate()
	// and an alert see them before the first occurrence.
	for _, c := range choices {
		m.choices.WithLabelValues(c)
	}
	for _, method := range []string{"REGISTER", "INVITE"} {
		m.authFailures.WithLabelValues(method)
	}
	for _, tp := range []string{"udp", "tcp", "tls"} {
		m.rateDropped.WithLabelValues(tp)
	}
	for _, a := range []screening.Action{screening.Allow, screening.Warn, screening.Block, screening.Defer} {
		m.verdicts.WithLabelValues(a.String())
		m.unscreened.WithLabelValues(a.String())
	}
	m.foreignBy[media.SideTrunk] = m.foreign.WithLabelValues(media.SideTrunk.String())
	m.foreignBy[media.SideLine] = m.foreign.WithLabelValues(media.SideLine.String())
	if reg != nil {
		reg.MustRegister(m.calls, m.verdicts, m.unscreened, m.refused, m.barred, m.transit, m.screen)
		reg.MustRegister(m.tcpRefused, m.tcpTimeouts, m.tcpAcceptErrors, m.foreign, m.rateDropped, m.bans)
		reg.MustRegister(m.choices, m.prompts, m.eventsTotal, m.eventsDropped)
		reg.MustRegister(m.authFailures, m.authLockouts, m.natPings, m.natDropped)
	}
	return m
}

// foreignMedia counts one packet a relay dropped for its source; it runs
// on the relay's receive path for every packet of a flood.
func (m *Metrics) foreignMedia(sd media.Side) {
	if sd == media.SideLine {
		m.foreignBy[media.SideLine].Inc()
		return
	}
	m.foreignBy[media.SideTrunk].Inc()
}

// registerServer adds the gauges that read the live server, and the zero
// series of what the server's configuration makes possible: its prompts,
// its TCP and TLS listeners' limits, its event sinks.
func (m *Metrics) registerServer(reg prometheus.Registerer, s *Server) {
	for _, name := range s.routing().prompts.Names() {
		m.prompts.WithLabelValues(name)
	}
	for _, l := range s.cfg.Listen {
		if l.Network != "tcp" && l.Network != "tls" {
			continue
		}
		for _, why := range []string{limit.RefusedPerSource, limit.RefusedMax} {
			m.tcpRefused.WithLabelValues(l.Network, why)
		}
		kinds := []string{limit.TimeoutRead, limit.TimeoutIdle}
		if l.Network == "tls" {
			kinds = append(kinds, limit.TimeoutHandshake)
		}
		for _, kind := range kinds {
			m.tcpTimeouts.WithLabelValues(l.Network, kind)
		}
		m.tcpAcceptErrors.WithLabelValues(l.Network)
	}
	for _, q := range s.events {
		m.eventsDropped.WithLabelValues(q.name, "queue_full")
		m.eventsDropped.WithLabelValues(q.name, "sink_error")
	}
	if reg == nil {
		return
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cleanline_active_calls",
		Help: "Calls in progress (ringing, warning or bridged).",
	}, func() float64 { return float64(s.ActiveCalls()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cleanline_rtp_ports_free",
		Help: "RTP port pairs no call holds (resting warm pairs included).",
	}, func() float64 { return float64(s.ports.Free()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cleanline_rtp_ports_warm",
		Help: "Port pairs of ended calls resting with their sockets open, for reuse.",
	}, func() float64 { return float64(s.ports.Warm()) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "cleanline_rtp_port_binds_total",
		Help: "RTP port pairs bound; a call that took a warm pair bound none.",
	}, func() float64 { return float64(s.ports.Binds()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cleanline_sources_banned",
		Help: "Sources banned now for exceeding sip.limits.rate_per_source.",
	}, func() float64 { return float64(s.rates.BannedNow()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cleanline_sip_transactions_retained",
		Help: "Answered SIP server transactions kept over UDP for RFC 3261's timers (an INVITE's non-2xx waiting for its ACK, others absorbing retransmissions); at most sip.limits.retained_transactions.",
	}, func() float64 { return float64(s.kept.len()) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "cleanline_sip_transactions_shed_total",
		Help: "Answered SIP server transactions ended before their timers because sip.limits.retained_transactions were kept: their final response is no longer retransmitted.",
	}, func() float64 { return float64(s.kept.shed.Load()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cleanline_registrations",
		Help: "Contacts registered by the lines' devices now (live bindings).",
	}, func() float64 { return float64(s.binds.count()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cleanline_auth_sources_locked_out",
		Help: "Sources locked out now for wrong answers to REGISTER.",
	}, func() float64 { return float64(s.authLock.BannedNow()) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "cleanline_rtp_stray_closes_total",
		Help: "Resting port pairs closed because a packet reached them after their call ended.",
	}, func() float64 { return float64(s.ports.Strays()) }))
}

// chose counts a warned call's choice.
func (m *Metrics) chose(choice string) { m.choices.WithLabelValues(choice).Inc() }

func (m *Metrics) screened(v screening.Verdict, took time.Duration) {
	m.screen.Observe(took.Seconds())
	action := v.Action.String()
	m.verdicts.WithLabelValues(action).Inc()
	if v.Has(screening.ReasonStoreUnavailable) {
		m.unscreened.WithLabelValues(action).Inc()
	}
}
