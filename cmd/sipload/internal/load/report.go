package load

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints one row per step: rates, outcomes, and post-dial
// delay, final-response and hang-up latencies.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "offered/s\tachieved/s\tplaced\tanswered\tdeclined\tfailed\ttimeout\terror\tcapped\tbye-fail\tfail%%\tpdd p50\tp90\tp99\tmax\tfinal p50\tp99\tbye p99\trtp sent\trtp recv\t\n")
	for _, s := range r.Steps {
		fmt.Fprintf(tw, "%g\t%.1f\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%d\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t\n",
			s.OfferedRate, s.CompletedRate, s.Attempted, s.Answered, s.Declined, failedCell(s), s.TimedOut, s.Errors,
			s.Capped, s.HangupFailed, 100*s.FailureRatio,
			ms(s.PDD.P50), ms(s.PDD.P90), ms(s.PDD.P99), ms(s.PDD.Max), ms(s.Final.P50), ms(s.Final.P99), ms(s.Hangup.P99),
			s.RTPSent, s.RTPRecv)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var notes []string
	if r.Interrupted {
		notes = append(notes, "interrupted: the last row covers the calls placed until then")
	}
	if r.Unfinished > 0 {
		notes = append(notes, fmt.Sprintf("%d calls were still in flight when the run ended and are not counted", r.Unfinished))
	}
	if r.RTPStray > 0 {
		notes = append(notes, fmt.Sprintf("%d RTP packets arrived for no call this side knew of", r.RTPStray))
	}
	if r.RTPRoundsSkipped > 0 {
		notes = append(notes, fmt.Sprintf("%d RTP rounds (20 ms each) were skipped: this machine could not send the full packet rate", r.RTPRoundsSkipped))
	}
	for _, s := range r.Steps {
		if s.BlockedDrawn > 0 && s.DeclinedBlock != s.BlockedDrawn {
			notes = append(notes, fmt.Sprintf("at %g/s: %d callers came from the blocklist, %d of them were declined, %d answered (counted as failures)",
				s.OfferedRate, s.BlockedDrawn, s.DeclinedBlock, s.AnsweredBlock))
		}
	}
	for _, n := range notes {
		if _, err := fmt.Fprintln(w, "note: "+n); err != nil {
			return err
		}
	}
	return nil
}

// failedCell shows the failures with their codes, e.g. "7 (503:5 408:2)".
func failedCell(s StepResult) string {
	if s.Failed == 0 {
		return "0"
	}
	codes := make([]int, 0, len(s.FailedByCode))
	for c := range s.FailedByCode {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = strconv.Itoa(c) + ":" + strconv.Itoa(s.FailedByCode[c])
	}
	return strconv.Itoa(s.Failed) + " (" + strings.Join(parts, " ") + ")"
}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + "ms"
}

// WriteJSON writes the report as one indented JSON document (durations in ns).
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable prints the answering line's summary and the calls that saw
// traffic after hang-up.
func (r AnswerReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	rows := [][2]string{
		{"listen", r.Listen},
		{"invites", fmt.Sprint(r.Invites)},
		{"answered", fmt.Sprint(r.Answered)},
		{"declined (603)", fmt.Sprint(r.Declined)},
		{"cancelled", fmt.Sprint(r.Cancelled)},
		{"failed", fmt.Sprint(r.Failed)},
		{"bye received / sent / failed", fmt.Sprintf("%d / %d / %d", r.ByeReceived, r.ByeSent, r.ByeFailed)},
		{"rtp sent / received / bad", fmt.Sprintf("%d / %d / %d", r.RTPSent, r.RTPRecv, r.RTPBad)},
		{"rtp rounds skipped (sender starved)", fmt.Sprint(r.RTPRoundsSkipped)},
		{"rtp packets for no known call", fmt.Sprint(r.RTPStray)},
		{"answered calls with no rtp in", fmt.Sprint(r.CallsNoRTP)},
		{"calls with traffic after hang-up", fmt.Sprint(r.LateCalls)},
		{"  late rtp packets / requests", fmt.Sprintf("%d / %d", r.LatePackets, r.LateRequests)},
		{"stray in-dialog requests", fmt.Sprint(r.StrayRequests)},
	}
	if r.Unfinished > 0 {
		rows = append(rows, [2]string{"unfinished calls", fmt.Sprint(r.Unfinished)})
	}
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	shown := 0
	for _, c := range r.Calls {
		if !c.Late {
			continue
		}
		if shown == 0 {
			fmt.Fprintln(w, "calls with traffic after hang-up (call-id, from, late packets, late requests, first after):")
		}
		if shown++; shown > 20 {
			fmt.Fprintf(w, "  ... and %d more\n", r.LateCalls-20)
			break
		}
		fmt.Fprintf(w, "  %s %s %d %d %.1fms\n", c.CallID, c.From, c.LatePackets, c.LateRequests, c.FirstLateMs)
	}
	return nil
}

// WriteJSON writes the answer report as JSON.
func (r AnswerReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteCalls writes one JSON object per call, for --calls-out.
func (r AnswerReport) WriteCalls(w io.Writer) error {
	enc := json.NewEncoder(w)
	for _, c := range r.Calls {
		if err := enc.Encode(c); err != nil {
			return err
		}
	}
	return nil
}
