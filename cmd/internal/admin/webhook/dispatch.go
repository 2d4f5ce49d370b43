package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/sip"
)

// Results of a delivery, as counted in cleanline_webhook_deliveries_total.
const (
	ResultDelivered = "delivered" // a 2xx
	ResultRejected  = "rejected"  // a 4xx other than 408, 425, 429, or a redirect: not retried
	ResultFailed    = "failed"    // every attempt failed (network, timeout, 5xx, 408, 425, 429)
	ResultAbandoned = "abandoned" // still queued or retrying when the service stopped
)

var results = []string{ResultDelivered, ResultRejected, ResultFailed, ResultAbandoned}

// Options are what a Dispatcher is given besides its webhooks.
type Options struct {
	Lines      []string              // the configured lines' names, which webhooks' lines must be among
	Registerer prometheus.Registerer // its metrics; nil: not exported
	Logger     *zap.Logger
	Client     *http.Client // default: redirects not followed
	UserAgent  string       // default "cleanline-webhook/1"
}

// Dispatcher delivers call events to webhooks (a sip.EventSink).
type Dispatcher struct {
	hooks    []*hook
	client   *http.Client
	ua       string
	log      *zap.Logger
	ctx      context.Context // ends when Close gives up: attempts and waits stop
	cancel   context.CancelFunc
	stopping chan struct{} // closed by Close: workers drain their queues, then return
	stopOnce sync.Once
	wg       sync.WaitGroup
}

var _ sip.EventSink = (*Dispatcher)(nil)

// hook is one webhook and its queue.
type hook struct {
	cfg     Config
	secret  []byte
	lines   map[string]bool // nil: every line
	events  map[string]bool
	queue   chan delivery
	lastLog atomic.Int64 // Unix ns of the last failure logged

	results map[string]prometheus.Counter
	dropped prometheus.Counter
	retries prometheus.Counter
}

// delivery is one event on its way to one webhook.
type delivery struct {
	id, typ string
	body    []byte
}

// New checks cfgs (Validate) and starts a Dispatcher for them, with
// Workers goroutines per webhook; Close stops them.
func New(cfgs []Config, o Options) (*Dispatcher, error) {
	if err := Validate(cfgs, o.Lines); err != nil {
		return nil, err
	}
	d := &Dispatcher{client: o.Client, ua: o.UserAgent, log: o.Logger, stopping: make(chan struct{})}
	if d.client == nil {
		d.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if d.ua == "" {
		d.ua = "cleanline-webhook/1"
	}
	if d.log == nil {
		d.log = zap.NewNop()
	}
	m := newMetrics(o.Registerer)
	for _, c := range cfgs {
		c = c.withDefaults()
		secret := []byte(c.Secret)
		if c.SecretFile != "" {
			var err error
			if secret, err = readSecret(c.SecretFile); err != nil {
				return nil, fmt.Errorf("%w: %s: secret_file: %w", errConfig, c.Name, err)
			}
		}
		h := &hook{cfg: c, secret: secret, events: map[string]bool{}, queue: make(chan delivery, c.Queue),
			results: map[string]prometheus.Counter{},
			dropped: m.dropped.WithLabelValues(c.Name), retries: m.retries.WithLabelValues(c.Name)}
		if len(c.Lines) > 0 {
			h.lines = map[string]bool{}
			for _, l := range c.Lines {
				h.lines[l] = true
			}
		}
		for _, e := range c.Events {
			h.events[e] = true
		}
		for _, r := range results {
			h.results[r] = m.deliveries.WithLabelValues(c.Name, r)
		}
		m.queued(o.Registerer, h)
		d.hooks = append(d.hooks, h)
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	for _, h := range d.hooks {
		for range h.cfg.Workers {
			d.wg.Go(func() { d.work(h) })
		}
	}
	return d, nil
}

// WriteEvents queues each event for the webhooks that want it. It never
// waits: an event a webhook's full queue cannot take is dropped and
// counted (cleanline_webhook_dropped_total).
func (d *Dispatcher) WriteEvents(_ context.Context, evs []sip.Event) error {
	for i := range evs {
		ev := &evs[i]
		var body []byte
		for _, h := range d.hooks {
			if !h.wants(ev) {
				continue
			}
			if body == nil {
				b, err := json.Marshal(ev)
				if err != nil {
					return fmt.Errorf("webhook: event %s: %w", ev.ID(), err)
				}
				body = b
			}
			select {
			case h.queue <- delivery{id: ev.ID(), typ: string(ev.Type), body: body}:
			default:
				h.dropped.Inc()
			}
		}
	}
	return nil
}

func (h *hook) wants(ev *sip.Event) bool {
	if h.lines != nil && !h.lines[ev.Line] {
		return false
	}
	if h.events[string(ev.Type)] {
		return true
	}
	return ev.Type == sip.EventRefused && ev.Outcome == "blocked" && h.events[Blocked]
}

// Close stops taking events and delivers what is queued until ctx ends;
// then whatever is left is abandoned (counted), attempts in flight are cut
// short, and Close returns once every worker has.
func (d *Dispatcher) Close(ctx context.Context) {
	d.stopOnce.Do(func() { close(d.stopping) })
	done := make(chan struct{})
	go func() {
		d.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		d.cancel()
		<-done
	}
	d.cancel()
}

func (d *Dispatcher) work(h *hook) {
	for {
		select {
		case dl := <-h.queue:
			d.deliver(h, dl)
		case <-d.stopping:
			for {
				select {
				case dl := <-h.queue:
					d.deliver(h, dl)
				default:
					return
				}
			}
		}
	}
}

// deliver tries dl up to Attempts times, waiting Backoff, then twice as
// long each time (with jitter, so that retries of many events spread).
func (d *Dispatcher) deliver(h *hook, dl delivery) {
	wait := h.cfg.Backoff
	var err error
	for attempt := 1; ; attempt++ {
		if d.ctx.Err() != nil {
			h.results[ResultAbandoned].Inc()
			return
		}
		var retry bool
		retry, err = d.post(h, dl)
		if err == nil {
			h.results[ResultDelivered].Inc()
			return
		}
		if d.ctx.Err() != nil {
			h.results[ResultAbandoned].Inc() // cut short by Close
			return
		}
		if !retry || attempt >= h.cfg.Attempts {
			break
		}
		h.retries.Inc()
		jittered := wait/2 + rand.N(wait/2+1) // [wait/2, wait]
		select {
		case <-time.After(jittered):
		case <-d.ctx.Done():
			h.results[ResultAbandoned].Inc()
			return
		}
		wait = min(2*wait, h.cfg.MaxBackoff)
	}
	result := ResultFailed
	var rej rejected
	if errors.As(err, &rej) {
		result = ResultRejected
	}
	h.results[result].Inc()
	// At most one line in 10 s per webhook: a receiver that is down stays
	// down a while, and every event would say so.
	if now := time.Now().UnixNano(); now-h.lastLog.Load() > int64(10*time.Second) {
		h.lastLog.Store(now)
		d.log.Warn("webhook delivery "+result, zap.String("webhook", h.cfg.Name), zap.String("event", dl.id),
			zap.String("type", dl.typ), zap.Error(err))
	}
}

// rejected is a response that retrying will not change.
type rejected struct{ status int }

func (r rejected) Error() string { return "rejected with " + strconv.Itoa(r.status) }

// post makes one attempt; retry says whether another may succeed.
func (d *Dispatcher) post(h *hook, dl delivery) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(d.ctx, h.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(dl.body))
	if err != nil {
		return false, err
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", d.ua)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(h.secret, ts, dl.body))
	req.Header.Set(HeaderEvent, dl.typ)
	req.Header.Set(HeaderDelivery, dl.id)
	res, err := d.client.Do(req)
	if err != nil {
		return true, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4096)) // lets the connection be reused
	res.Body.Close()
	switch s := res.StatusCode; {
	case s >= 200 && s < 300:
		return false, nil
	case s == http.StatusRequestTimeout, s == http.StatusTooEarly, s == http.StatusTooManyRequests, s >= 500:
		return true, fmt.Errorf("status %d", s)
	default:
		return false, rejected{s}
	}
}

// metrics are the Dispatcher's counters, registered once per Dispatcher.
type metrics struct {
	deliveries *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	retries    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanline_webhook_deliveries_total",
			Help: "Call events delivered to webhooks or given up, by webhook and result: delivered (2xx), rejected (4xx, not retried), failed (every attempt failed), abandoned (at shutdown).",
		}, []string{"webhook", "result"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanline_webhook_dropped_total",
			Help: "Call events a webhook's full queue could not take (the receiver is slow or down; calls never wait), by webhook.",
		}, []string{"webhook"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanline_webhook_retries_total",
			Help: "Webhook attempts retried after a failure (network, timeout, 5xx, 408, 425, 429), by webhook.",
		}, []string{"webhook"}),
	}
	if reg != nil {
		reg.MustRegister(m.deliveries, m.dropped, m.retries)
	}
	return m
}

// queued exports how many events wait in h's queue.
func (metrics) queued(reg prometheus.Registerer, h *hook) {
	if reg == nil {
		return
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "cleanline_webhook_queued",
		Help:        "Call events waiting in a webhook's queue (at most its queue setting), by webhook.",
		ConstLabels: prometheus.Labels{"webhook": h.cfg.Name},
	}, func() float64 { return float64(len(h.queue)) }))
}
