package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/cmd/internal/admin"
	"github.com/cleanline/cleanline/screening"
)

// The operators' commands. Each parses its flags, then asks admin.API:
// the running service's HTTP API when one answers at admin.listen, or a
// Service over the store (env.api). Printing is all that happens here.

func cmdCheck(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	line := fs.String("line", admin.DefaultLine, "the line being called")
	asJSON := fs.Bool("json", false, "print the verdict as JSON")
	intl := fs.Bool("international", false, "as if the call came on an international trunk")
	dial := fs.Bool("dial", false, "what the line gets when it dials NUMBER, instead of when NUMBER calls it")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("check NUMBER: no number given")
	}
	if *dial && *intl {
		return usagef("check: --international is about calls to the line; --dial about the line's own")
	}
	a, err := e.api(ctx)
	if err != nil {
		return err
	}
	// Without --line, the default policy's line, whatever lines exist.
	l := ""
	if flagGiven(fs, "line") {
		l = *line
	}
	raw := number(pos)
	if *dial {
		d, err := a.CheckDial(ctx, admin.DialIn{Number: raw, Line: l})
		if err != nil {
			return err
		}
		e.code = printDial(e, d, *asJSON)
		return nil
	}
	v, err := a.Check(ctx, admin.CheckIn{Number: raw, Line: l, International: *intl})
	if err != nil {
		return err
	}
	if *asJSON {
		v.Why = "" // the JSON is the verdict, as it always was
		b, _ := json.Marshal(v)
		fmt.Fprintln(e.stdout, string(b))
	} else {
		num := v.Number
		if num == "" {
			num = "-"
		}
		fmt.Fprintf(e.stdout, "%s %s %s\n", v.Action, num, strings.Join(v.Reasons, ","))
		if v.Why != "" {
			fmt.Fprintf(e.stdout, "  why: %s\n", v.Why)
		}
		if v.Entry != nil {
			fmt.Fprintf(e.stdout, "  entry: %s\n", describeSummary(v.Entry))
		}
	}
	switch v.Action {
	case screening.Warn.String():
		e.code = exitWarn
	case screening.Block.String():
		e.code = exitBlock
	case screening.Defer.String():
		e.code = exitError // no verdict: the store did not answer
	}
	return nil
}

// printDial prints what serve does when a line dials a number: allow (to
// the trunk, or a feature code cleanline answers) or bar; the exit status
// is check's, 0 allow and 2 bar.
func printDial(e *env, d admin.DialResult, asJSON bool) int {
	code := exitOK
	if d.Action == "bar" {
		code = exitBlock
	}
	if asJSON {
		b, _ := json.Marshal(struct {
			Input     string   `json:"input"`
			Line      string   `json:"line"`
			Action    string   `json:"action"`
			Number    string   `json:"number"`
			Emergency bool     `json:"emergency"`
			Protected bool     `json:"protected"`
			Trusted   bool     `json:"trusted"`
			Classes   []string `json:"classes"`
			Barred    string   `json:"barred"`
		}{d.Input, d.Line, d.Action, d.Number, d.Emergency, d.Protected, d.Trusted, append([]string{}, d.Classes...), d.Barred})
		fmt.Fprintln(e.stdout, string(b))
		return code
	}
	var why []string
	switch {
	case d.Feature != "":
		why = append(why, "feature."+d.Feature)
	case d.Number == "" && len(d.Classes) == 0:
		why = append(why, "not_a_number")
	}
	for _, f := range []struct {
		on   bool
		what string
	}{{d.Emergency, "emergency"}, {d.Protected, "protected"}, {d.Trusted, "trusted"}} {
		if f.on {
			why = append(why, f.what)
		}
	}
	why = append(why, d.Classes...)
	num := d.Number
	if num == "" {
		num = "-"
	}
	fmt.Fprintf(e.stdout, "%s %s %s\n", d.Action, num, strings.Join(why, ","))
	if d.Why != "" {
		fmt.Fprintf(e.stdout, "  why: %s\n", d.Why)
	}
	return code
}

func describeSummary(s *screening.EntrySummary) string {
	n := s.Number
	if s.Range {
		n += "*"
	}
	return fmt.Sprintf("%s %s, %d reports, reason %q, source %q", n, s.Status, s.Reports, s.Reason, s.Source)
}

func cmdBlock(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	reason := fs.String("reason", "", "why the number is blocked")
	source := fs.String("source", "cli", "who says so")
	reported := fs.Bool("reported", false, "only reported (warn), not confirmed (block)")
	force := fs.Bool("force", false, "let --reported downgrade a number already confirmed")
	asJSON := fs.Bool("json", false, "list as JSON lines")
	line := fs.String("line", "", "block for this line alone")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("block: want add, remove or list")
	}
	verb, rest := pos[0], pos[1:]
	switch verb {
	case "add", "remove":
		if len(rest) == 0 {
			return usagef("block %s: no number given", verb)
		}
	case "list":
		if len(rest) != 0 {
			return usagef("block list takes no arguments")
		}
	default:
		return usagef("block: unknown action %q; want add, remove or list", verb)
	}
	if *line != "" {
		for _, f := range []string{"reason", "source", "reported", "force"} {
			if flagGiven(fs, f) {
				return usagef("block --line: --%s is for the shared blocklist; a line's block is only the number", f)
			}
		}
	}
	a, err := e.api(ctx)
	if err != nil {
		return err
	}
	if *line != "" {
		return blockForLine(ctx, e, a, verb, *line, number(rest), *asJSON)
	}
	switch verb {
	case "list":
		return a.BlockExport(ctx, func(en blocklist.Entry) error {
			if *asJSON {
				b, _ := json.Marshal(en)
				_, err := fmt.Fprintln(e.stdout, string(b))
				return err
			}
			_, err := fmt.Fprintln(e.stdout, describeEntry(en))
			return err
		})
	case "remove":
		ack, err := a.BlockRemove(ctx, admin.NumberRef{Number: number(rest)})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "removed %s\n", ack.Number)
		return nil
	}
	res, err := a.BlockAdd(ctx, admin.BlockAdd{Number: number(rest), Reason: *reason, Source: *source, Reported: *reported, Force: *force})
	if err != nil {
		return err
	}
	switch {
	case res.Kept != "":
		fmt.Fprintf(e.stdout, "updated %s (still %s: --reported does not downgrade it without --force)\n", res.Number, res.Kept)
	case res.Added:
		fmt.Fprintf(e.stdout, "added %s (%s)\n", res.Number, res.Status)
	default:
		fmt.Fprintf(e.stdout, "updated %s (%s)\n", res.Number, res.Status)
	}
	return nil
}

// blockForLine is block add|remove|list --line: the line's own block list.
func blockForLine(ctx context.Context, e *env, a admin.API, verb, line, raw string, asJSON bool) error {
	switch verb {
	case "list":
		return eachPage(func(q admin.ListQuery) (admin.Page[string], error) {
			return a.LineBlockList(ctx, admin.LineList{Line: line, ListQuery: q})
		}, func(n string) {
			if asJSON {
				b, _ := json.Marshal(n)
				n = string(b)
			}
			fmt.Fprintln(e.stdout, n)
		})
	case "remove":
		ack, err := a.LineBlockRemove(ctx, admin.LineNumberRef{Line: line, Number: raw})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "unblocked %s for line %s\n", ack.Number, ack.Line)
		return nil
	}
	ack, err := a.LineBlockAdd(ctx, admin.LineNumber{Line: line, Number: raw})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "blocked %s for line %s\n", ack.Number, ack.Line)
	return nil
}

// eachPage calls print for every item of a paged list, page after page.
func eachPage[T any](get func(admin.ListQuery) (admin.Page[T], error), print func(T)) error {
	q := admin.ListQuery{Limit: admin.MaxLimit}
	for {
		p, err := get(q)
		if err != nil {
			return err
		}
		for _, it := range p.Items {
			print(it)
		}
		if p.Next == "" {
			return nil
		}
		q.Cursor = p.Next
	}
}

func describeEntry(en blocklist.Entry) string {
	n := en.Number
	if en.Range {
		n += "*"
	}
	return fmt.Sprintf("%-17s %-9s reports=%d last_seen=%s source=%q reason=%q",
		n, en.Status, en.Reports, en.LastSeen.UTC().Format(time.RFC3339), en.Source, en.Reason)
}

func cmdReport(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	line := fs.String("line", "", "the line that reports it")
	reason := fs.String("reason", "reported", "what happened")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("report NUMBER: no number given")
	}
	a, err := e.api(ctx)
	if err != nil {
		return err
	}
	en, err := a.Report(ctx, admin.ReportIn{Line: *line, Number: number(pos), Reason: *reason, Source: "cli"})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "reported %s: %s, %d reports\n", en.Number, en.Status, en.Reports)
	return nil
}

func cmdImport(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	reported := fs.Bool("reported", false, "import as reported (warn) instead of confirmed (block)")
	source := fs.String("source", "", "source recorded for lines that name none (default import:FILE)")
	force := fs.Bool("force", false, "let reported lines downgrade numbers already confirmed (by default they stay confirmed)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("import FILE: want exactly one file")
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer f.Close()
	a, err := e.api(ctx)
	if err != nil {
		return err
	}
	res, err := a.Import(ctx, admin.ImportIn{Name: pos[0], Reported: *reported, Force: *force, Source: *source, Data: f})
	for _, r := range res.Rejects {
		fmt.Fprintf(e.stderr, "%s:%d: %s\n", pos[0], r.Line, r.Message)
	}
	fmt.Fprintf(e.stdout, "added %d, updated %d, rejected %d\n", res.Added, res.Updated, res.Rejected)
	if err == nil && res.Rejected > 0 {
		// The good lines are stored; the status tells a script that some
		// were not. A store or read error (exitError) says more and wins.
		e.code = exitRejected
	}
	return err
}
