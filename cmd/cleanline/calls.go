package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cleanline/cleanline/cmd/internal/admin"
	"github.com/cleanline/cleanline/sip"
)

// lines and calls: the configured lines, and the calls in progress of a
// running service.

func cmdLines(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	asJSON := fs.Bool("json", false, "print each line as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("lines takes no arguments")
	}
	a, err := e.api(ctx)
	if err != nil {
		return err
	}
	return eachPage(func(q admin.ListQuery) (admin.Page[admin.LineInfo], error) { return a.Lines(ctx, q) },
		func(l admin.LineInfo) {
			if *asJSON {
				b, _ := json.Marshal(l)
				fmt.Fprintln(e.stdout, string(b))
				return
			}
			p := l.Policy
			fmt.Fprintf(e.stdout, "%s numbers=%s withheld=%s strict=%t report_threshold=%d cooldown=%s store_failure=%s dial=%s line_check=%s report=%s%s\n",
				l.Name, strings.Join(l.Numbers, ","), p.Withheld, p.Strict, p.ReportThreshold, p.Cooldown, p.StoreFailure,
				dialAllowed(p), l.Features.LineCheck, l.Features.Report, devices(l))
		})
}

// devices says which of a line's phones are registered, and from where:
// " devices=a,b registered=a@192.168.1.30:5060/udp(until 15:04:05)", or
// registered=none (nothing to ring); nothing for a line without devices.
func devices(l admin.LineInfo) string {
	if len(l.Devices) == 0 {
		return ""
	}
	var regs []string
	for _, r := range l.Registered {
		nat := ""
		if r.BehindNAT {
			nat = ",nat"
		}
		regs = append(regs, fmt.Sprintf("%s@%s/%s(until %s%s)", r.Device, r.Source, r.Transport, r.Expires.Local().Format(time.TimeOnly), nat))
	}
	if len(regs) == 0 {
		regs = []string{"none"}
	}
	return " devices=" + strings.Join(l.Devices, ",") + " registered=" + strings.Join(regs, ",")
}

// dialAllowed names the classes a line may dial beyond ordinary numbers.
func dialAllowed(p admin.LinePolicy) string {
	var on []string
	for _, c := range []struct {
		ok   bool
		name string
	}{{p.Dial.PremiumRate, "premium_rate"}, {p.Dial.Satellite, "satellite"}, {p.Dial.Personal, "personal"},
		{p.Dial.SharedCost, "shared_cost"}, {p.Dial.International, "international"}, {p.Dial.ServiceCode, "service_code"}} {
		if c.ok {
			on = append(on, c.name)
		}
	}
	if len(on) == 0 {
		return "-"
	}
	return strings.Join(on, ",")
}

func cmdCalls(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	line := fs.String("line", "", "only this line's calls")
	caller := fs.String("caller", "", "recent calls: only this number's")
	since := fs.Duration("since", 0, "recent calls: only those of the last D (24h, 30m)")
	limit := fs.Int("limit", 20, "recent calls: at most this many")
	asJSON := fs.Bool("json", false, "print each call as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0 || len(pos) == 1 && pos[0] == "recent":
	case len(pos) == 1 && pos[0] == "live":
	case len(pos) == 2 && pos[0] == "end":
	default:
		return usagef("calls: want recent (the default), live, or end ID")
	}
	if *limit < 1 {
		return usagef("calls: --limit %d: want 1 or more", *limit)
	}
	a, err := e.api(ctx)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0 || pos[0] == "recent":
		q := admin.RecentQuery{Line: *line, Caller: *caller}
		if *since > 0 {
			q.Since = time.Now().Add(-*since)
		}
		return recentCalls(ctx, e, a, q, *limit, *asJSON)
	case pos[0] == "end":
		if _, err := a.EndCall(ctx, admin.CallRef{Line: *line, ID: pos[1]}); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "ended call %s\n", pos[1])
		return nil
	}
	now := time.Now()
	return eachPage(func(q admin.ListQuery) (admin.Page[admin.LiveCall], error) {
		return a.LiveCalls(ctx, admin.LiveQuery{Line: *line, ListQuery: q})
	}, func(c admin.LiveCall) {
		if *asJSON {
			b, _ := json.Marshal(c)
			fmt.Fprintln(e.stdout, string(b))
			return
		}
		who := c.Number
		switch {
		case c.Withheld:
			who = "withheld"
		case who == "" && c.Direction == "outbound":
			who = "dialled:" + c.Dialled
		case who == "":
			who = c.Caller
		}
		fmt.Fprintf(e.stdout, "%s %s %s %s %s %s since %s (%s)\n", c.ID, c.Direction, c.Line, who,
			orDash(c.Action), c.State, c.Since.Local().Format(time.TimeOnly), now.Sub(c.Since).Round(time.Second))
	})
}

// recentCalls prints up to limit call records, newest first: one line
// each (when, line, direction, who, verdict, outcome, choice, duration),
// or each record as the event store keeps it (--json).
func recentCalls(ctx context.Context, e *env, a admin.API, q admin.RecentQuery, limit int, asJSON bool) error {
	q.Limit = min(limit, admin.MaxLimit)
	for n := 0; ; {
		p, err := a.RecentCalls(ctx, q)
		if err != nil {
			return err
		}
		for _, r := range p.Items {
			if n == limit {
				return nil
			}
			n++
			if asJSON {
				fmt.Fprintln(e.stdout, string(r))
				continue
			}
			ev, err := sip.DecodeEvent(r)
			if err != nil {
				fmt.Fprintf(e.stdout, "? unreadable record: %v\n", err)
				continue
			}
			who := ev.Caller
			switch {
			case ev.Direction == "outbound":
				who = "dialled:" + orDash(ev.Dialled)
			case ev.Privacy || who == "":
				who = "withheld"
			}
			fmt.Fprintf(e.stdout, "%s %s %s %s %s %s %s %s\n", ev.Start.Local().Format(time.DateTime), ev.Line, ev.Direction,
				who, orDash(ev.Verdict), orDash(ev.Outcome), orDash(ev.Choice), ev.Duration.Duration().Round(time.Second))
		}
		if p.Next == "" || n == limit {
			return nil
		}
		q.Cursor = p.Next
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
