package sip

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// EventSink takes call events away from the call path: the store's event
// log, webhooks. WriteEvents is called from one goroutine per sink, with
// events in the order they happened (a call's in Seq order), in batches
// gathered for up to 100 ms; it may block (a store round trip) but should
// return within ctx. It must not keep evs after returning.
type EventSink interface {
	WriteEvents(ctx context.Context, evs []Event) error
}

// DefaultEventQueue is a sink's queue when WithEvents is given none: a few
// seconds of a saturated server's events.
const DefaultEventQueue = 8192

const (
	eventBatch = 256 // events per WriteEvents at most
	// eventLinger is how long a batch waits for more events after its
	// first: at 1,000 calls/s, one store round trip for 100 calls instead
	// of one for each event (which cost 8% of cleanline's CPU per call).
	// The sink's goroutine sleeps meanwhile, so that an event's send
	// wakes nobody.
	eventLinger       = 100 * time.Millisecond
	eventWriteTimeout = 10 * time.Second // one WriteEvents
	eventDrainTimeout = 5 * time.Second  // what Close waits for a sink to catch up
)

// WithEvents hands every call event to sink, named name in metrics and
// logs ("store", "webhooks"), through a queue of queue events (<= 0:
// DefaultEventQueue), and a batch of at most 256 being gathered or
// written. The call path never waits for it: when the queue is full, the
// event is dropped and counted (cleanline_events_dropped_total{sink,
// reason="queue_full"}). May be given once per sink.
func WithEvents(name string, sink EventSink, queue int) Option {
	return func(s *Server) {
		if queue <= 0 {
			queue = DefaultEventQueue
		}
		s.events = append(s.events, &eventQueue{name: name, sink: sink, ch: make(chan Event, queue),
			quit: make(chan struct{}), done: make(chan struct{})})
	}
}

// eventQueue is one sink's bounded queue and the goroutine that empties it.
type eventQueue struct {
	name string
	sink EventSink
	ch   chan Event
	quit chan struct{} // closed by stop: drain what is queued, then return
	done chan struct{} // closed when the goroutine has returned
	once sync.Once

	dropped prometheus.Counter // queue full
	failed  prometheus.Counter // the sink returned an error: the batch is lost
	log     *zap.Logger
}

// emit counts ev and offers it to every sink's queue, never waiting.
func (s *Server) emit(ev Event) {
	s.metrics.events[ev.Type].Inc()
	for _, q := range s.events {
		select {
		case q.ch <- ev:
		default:
			q.dropped.Inc()
		}
	}
}

// startEvents starts each sink's goroutine (NewServer, once metrics exist).
func (s *Server) startEvents() {
	for _, q := range s.events {
		q.dropped = s.metrics.eventsDropped.WithLabelValues(q.name, "queue_full")
		q.failed = s.metrics.eventsDropped.WithLabelValues(q.name, "sink_error")
		q.log = s.log.Named("events").With(zap.String("sink", q.name))
		go q.run()
	}
}

// stopEvents lets every sink write what is queued, for at most
// eventDrainTimeout, and stops them (Close: the calls have ended, so their
// records are queued).
func (s *Server) stopEvents() {
	for _, q := range s.events {
		q.stop()
	}
	deadline := time.NewTimer(eventDrainTimeout)
	defer deadline.Stop()
	for _, q := range s.events {
		select {
		case <-q.done:
		case <-deadline.C:
			q.log.Warn("events not written at shutdown: sink too slow", zap.Int("queued", len(q.ch)))
			return
		}
	}
}

func (q *eventQueue) stop() { q.once.Do(func() { close(q.quit) }) }

func (q *eventQueue) run() {
	defer close(q.done)
	batch := make([]Event, 0, eventBatch)
	var lastLog time.Time
	for {
		select {
		case ev := <-q.ch:
			batch = append(batch, ev)
		case <-q.quit:
			// Whatever is queued now is written; later events are not.
			for n := len(q.ch); n > 0; n-- {
				batch = append(batch, <-q.ch)
				if len(batch) == eventBatch {
					q.write(batch, &lastLog)
					batch = batch[:0]
				}
			}
			if len(batch) > 0 {
				q.write(batch, &lastLog)
			}
			return
		}
		// Sleep rather than wake for every event, then take what came
		// meanwhile, in batches.
		pause := time.NewTimer(eventLinger)
		select {
		case <-pause.C:
		case <-q.quit: // written now; the rest next round
			pause.Stop()
		}
		for {
			batch = q.take(batch)
			q.write(batch, &lastLog)
			clear(batch) // drop references to the events' slices
			batch = batch[:0]
			if len(q.ch) == 0 {
				break
			}
		}
	}
}

// take adds what is queued to batch, up to eventBatch, without waiting.
func (q *eventQueue) take(batch []Event) []Event {
	for len(batch) < eventBatch {
		select {
		case ev := <-q.ch:
			batch = append(batch, ev)
		default:
			return batch
		}
	}
	return batch
}

func (q *eventQueue) write(batch []Event, lastLog *time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), eventWriteTimeout)
	err := q.sink.WriteEvents(ctx, batch)
	cancel()
	if err == nil {
		return
	}
	q.failed.Add(float64(len(batch)))
	// At most one line in 10 s: a store that is down stays down a while.
	if now := time.Now(); now.Sub(*lastLog) > 10*time.Second {
		*lastLog = now
		q.log.Warn("call events not written", zap.Int("events", len(batch)), zap.Error(err))
	}
}
