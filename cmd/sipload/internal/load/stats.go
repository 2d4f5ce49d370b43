package load

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Outcome is how one call attempt ended.
type Outcome int

const (
	OutcomeAnswered Outcome = iota // 2xx
	OutcomeDeclined                // 603 Decline: what a screening hit looks like
	OutcomeFailed                  // any other final response
	OutcomeTimedOut                // no final response within --answer-timeout
	OutcomeError                   // transport or local error (no response at all)
)

// Latencies holds samples for exact percentiles. A sorted slice is exact and,
// at the sizes a run produces (tens of thousands per step), sorting once at
// report time costs milliseconds; an HDR histogram would save memory we do
// not need to save.
type Latencies struct {
	s []time.Duration
}

func (l *Latencies) Add(d time.Duration) { l.s = append(l.s, d) }
func (l *Latencies) Len() int            { return len(l.s) }

// Summary is the percentiles of a sample set; zero when empty.
type Summary struct {
	N   int           `json:"n"`
	P50 time.Duration `json:"p50_ns"`
	P90 time.Duration `json:"p90_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

// Summary sorts the samples in place (nearest-rank percentiles).
func (l *Latencies) Summary() Summary {
	n := len(l.s)
	if n == 0 {
		return Summary{}
	}
	slices.Sort(l.s)
	rank := func(p float64) time.Duration {
		i := int(p*float64(n)+0.999999) - 1
		return l.s[min(max(i, 0), n-1)]
	}
	return Summary{N: n, P50: rank(0.50), P90: rank(0.90), P99: rank(0.99), Max: l.s[n-1]}
}

// CallResult is what one call reports to its step.
type CallResult struct {
	Outcome    Outcome
	Code       int           // final status code, 0 when none
	Blocked    bool          // the caller number came from the blocklist file
	From       string        // the caller number
	SentUnixNs int64         // wall clock when the INVITE was sent; 0 when it was not
	PDD        time.Duration // INVITE sent -> first 180/183; 0 when none came
	Final      time.Duration // INVITE sent -> final response
	Hangup     time.Duration // BYE sent -> its 200; 0 when not sent by us
	HangupOK   bool          // the dialog was ended cleanly (our BYE got 200, or theirs was answered)
	HangupSent bool          // we sent the BYE
	RTPSent    uint64
	RTPRecv    uint64
	RTPBad     uint64 // packets that did not parse as RTP or had a foreign payload type
}

// step accumulates the results of the calls launched during one step.
type step struct {
	mu       sync.Mutex
	rate     float64
	start    time.Time
	duration time.Duration // measured from the first launch to the last
	launched int
	capped   int // not placed: the concurrency cap was reached
	res      StepResult
	pdd      Latencies
	final    Latencies
	hangup   Latencies
}

// StepResult is one row of the final table.
type StepResult struct {
	OfferedRate   float64 `json:"offered_rate"`
	Seconds       float64 `json:"seconds"`
	Attempted     int     `json:"attempted"`
	Capped        int     `json:"not_placed_concurrency_cap"`
	Completed     int     `json:"completed"` // answered + declined: the call got the answer it should
	CompletedRate float64 `json:"completed_rate"`
	Answered      int     `json:"answered"`
	Declined      int     `json:"declined"`
	DeclinedBlock int     `json:"declined_blocked_callers"`
	BlockedDrawn  int     `json:"blocked_callers_drawn"`
	// AnsweredBlock: callers from the blocklist that were answered, i.e.
	// not screened: a failure, like any call without the answer it should get.
	AnsweredBlock int         `json:"answered_blocked_callers"`
	FailedByCode  map[int]int `json:"failed_by_code,omitempty"`
	Failed        int         `json:"failed"`
	TimedOut      int         `json:"timed_out"`
	Errors        int         `json:"errors"`
	HangupFailed  int         `json:"hangup_failed"`
	PDD           Summary     `json:"post_dial_delay"`
	Final         Summary     `json:"final_response"`
	Hangup        Summary     `json:"hangup"`
	RTPSent       uint64      `json:"rtp_sent"`
	RTPRecv       uint64      `json:"rtp_received"`
	RTPBad        uint64      `json:"rtp_bad"`
	FailureRatio  float64     `json:"failure_ratio"`
	Interrupted   bool        `json:"interrupted,omitempty"`
}

func (s *step) add(r CallResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := &s.res
	if r.Blocked {
		x.BlockedDrawn++
	}
	switch r.Outcome {
	case OutcomeAnswered:
		x.Answered++
		if r.Blocked {
			x.AnsweredBlock++
		}
	case OutcomeDeclined:
		x.Declined++
		if r.Blocked {
			x.DeclinedBlock++
		}
	case OutcomeFailed:
		x.Failed++
		if x.FailedByCode == nil {
			x.FailedByCode = map[int]int{}
		}
		x.FailedByCode[r.Code]++
	case OutcomeTimedOut:
		x.TimedOut++
	default:
		x.Errors++
	}
	if r.PDD > 0 {
		s.pdd.Add(r.PDD)
	}
	if r.Final > 0 {
		s.final.Add(r.Final)
	}
	if r.HangupSent && r.HangupOK {
		s.hangup.Add(r.Hangup)
	}
	if r.Outcome == OutcomeAnswered && !r.HangupOK {
		x.HangupFailed++
	}
	x.RTPSent += r.RTPSent
	x.RTPRecv += r.RTPRecv
	x.RTPBad += r.RTPBad
}

// result finalises the row; call it once every call of the step has reported.
func (s *step) result() StepResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.res
	x.OfferedRate = s.rate
	x.Attempted = s.launched
	x.Capped = s.capped
	x.Seconds = s.duration.Seconds()
	x.Completed = x.Answered + x.Declined
	if x.Seconds > 0 {
		x.CompletedRate = float64(x.Completed) / x.Seconds
	}
	x.PDD, x.Final, x.Hangup = s.pdd.Summary(), s.final.Summary(), s.hangup.Summary()
	// A failure is any call that did not get the answer it should (a
	// blocked caller answered included), did not hang up cleanly, or could
	// not be placed at all.
	if n := x.Attempted + x.Capped; n > 0 {
		bad := x.Failed + x.TimedOut + x.Errors + x.HangupFailed + x.Capped + x.AnsweredBlock
		x.FailureRatio = float64(bad) / float64(n)
	}
	return x
}

// live are the counters the progress line reads once a second.
type live struct {
	launched, answered, declined, failed, timedOut, errors atomic.Int64
}
