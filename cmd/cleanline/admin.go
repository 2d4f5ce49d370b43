package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/screening"
)

// defaultLine is the line name commands use when --line is not given.
const defaultLine = "default"

func cmdCheck(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	line := fs.String("line", defaultLine, "the line being called")
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
	if err := e.setup(ctx); err != nil {
		return err
	}
	if flagGiven(fs, "line") {
		if err := e.knownLine(*line); err != nil {
			return err
		}
	}
	sc, err := e.screener()
	if err != nil {
		return err
	}
	raw := number(pos)
	if *dial {
		e.code = checkDial(ctx, e, sc, *line, raw, *asJSON)
		return nil
	}
	// A dry run: checking a number must not count as a call (velocity).
	v := sc.Screen(ctx, screening.Call{Line: *line, From: raw, International: *intl, DryRun: true})
	if *asJSON {
		out := struct {
			Input string `json:"input"`
			Line  string `json:"line"`
			screening.Verdict
		}{raw, *line, v}
		b, _ := json.Marshal(out)
		fmt.Fprintln(e.stdout, string(b))
	} else {
		reasons := make([]string, len(v.Reasons))
		for i, r := range v.Reasons {
			reasons[i] = string(r)
		}
		num := v.Number
		if num == "" {
			num = "-"
		}
		fmt.Fprintf(e.stdout, "%s %s %s\n", v.Action, num, strings.Join(reasons, ","))
		if _, perr := sc.Normalizer().Parse(raw); perr != nil && !screening.IsWithheld(perr) {
			fmt.Fprintf(e.stdout, "  why: %v\n", perr)
		} else if v.Has(screening.ReasonInvalid) {
			fmt.Fprintf(e.stdout, "  why: %q is not an allocated, dialable number\n", raw)
		}
		if v.Entry != nil {
			fmt.Fprintf(e.stdout, "  entry: %s\n", describeSummary(v.Entry))
		}
	}
	switch v.Action {
	case screening.Warn:
		e.code = exitWarn
	case screening.Block:
		e.code = exitBlock
	case screening.Defer:
		e.code = exitError // no verdict: the store did not answer
	}
	return nil
}

// checkDial says what serve does when line dials raw: allow (to the trunk,
// or a feature code cleanline answers) or bar; the exit status is check's,
// 0 allow and 2 bar. Dialled reads nothing into the store.
func checkDial(ctx context.Context, e *env, sc *screening.Screener, line, raw string, asJSON bool) int {
	d := sc.Dialled(ctx, line, raw)
	action, code := "allow", exitOK
	var why []string
	switch {
	case d.Feature == screening.FeatureLineCheck:
		why = append(why, "feature.line_check")
	case d.Feature == screening.FeatureReport:
		why = append(why, "feature.report")
	case d.Number == "" && len(d.Classes) == 0:
		action, code = "bar", exitBlock
		why = append(why, "not_a_number")
	}
	if d.Emergency {
		why = append(why, "emergency")
	}
	if d.Protected {
		why = append(why, "protected")
	}
	if d.Trusted {
		why = append(why, "trusted")
	}
	for _, c := range d.Classes {
		why = append(why, string(c))
	}
	if d.Barred != "" {
		action, code = "bar", exitBlock
	}
	if asJSON {
		b, _ := json.Marshal(struct {
			Input     string                `json:"input"`
			Line      string                `json:"line"`
			Action    string                `json:"action"`
			Number    string                `json:"number"`
			Emergency bool                  `json:"emergency"`
			Protected bool                  `json:"protected"`
			Trusted   bool                  `json:"trusted"`
			Classes   []screening.DialClass `json:"classes"`
			Barred    screening.DialClass   `json:"barred"`
		}{raw, line, action, d.Number, d.Emergency, d.Protected, d.Trusted, append([]screening.DialClass{}, d.Classes...), d.Barred})
		fmt.Fprintln(e.stdout, string(b))
		return code
	}
	num := d.Number
	if num == "" {
		num = "-"
	}
	fmt.Fprintf(e.stdout, "%s %s %s\n", action, num, strings.Join(why, ","))
	switch {
	case d.Barred != "":
		fmt.Fprintf(e.stdout, "  why: line %s may not dial %s (its policy's dial.%s is false)\n", line, d.Barred, d.Barred)
	case d.Number == "" && d.Feature == screening.NoFeature && len(d.Classes) == 0:
		if _, err := sc.Normalizer().Parse(raw); err != nil {
			fmt.Fprintf(e.stdout, "  why: %v\n", err)
		}
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
	if err := e.setup(ctx); err != nil {
		return err
	}
	norm, err := e.normalizer()
	if err != nil {
		return err
	}
	switch verb {
	case "list":
		return e.store.Walk(ctx, func(en blocklist.Entry) error {
			if *asJSON {
				b, _ := json.Marshal(en)
				_, err := fmt.Fprintln(e.stdout, string(b))
				return err
			}
			_, err := fmt.Fprintln(e.stdout, describeEntry(en))
			return err
		})
	case "remove":
		key, isRange, err := entryKey(norm, number(rest))
		if err != nil {
			return err
		}
		if err := e.store.Remove(ctx, key, isRange); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "removed %s\n", display(key, isRange))
		return nil
	}
	key, isRange, err := entryKey(norm, number(rest))
	if err != nil {
		return err
	}
	status := blocklist.StatusConfirmed
	if *reported {
		status = blocklist.StatusReported
	}
	var opts []blocklist.PutOption
	if *force {
		opts = append(opts, blocklist.ForceStatus())
	}
	now := time.Now()
	added, _, err := e.store.Put(ctx, []blocklist.Entry{{Number: key, Range: isRange, Status: status,
		Reason: *reason, Source: *source, FirstSeen: now, LastSeen: now}}, opts...)
	if err != nil {
		return err
	}
	if added == 0 && !*force && status == blocklist.StatusReported {
		// Put keeps a stronger status: say what the entry is, not what was asked.
		en, err := e.store.Get(ctx, key, isRange)
		if err != nil {
			return fmt.Errorf("updated %s, but reading it back: %w", display(key, isRange), err)
		}
		if en.Status != status {
			fmt.Fprintf(e.stdout, "updated %s (still %s: --reported does not downgrade it without --force)\n", display(key, isRange), en.Status)
			return nil
		}
	}
	what := "updated"
	if added == 1 {
		what = "added"
	}
	fmt.Fprintf(e.stdout, "%s %s (%s)\n", what, display(key, isRange), status)
	return nil
}

// entryKey reads a number, or a range when it ends in '*'.
func entryKey(norm *screening.Normalizer, raw string) (string, bool, error) {
	if strings.HasSuffix(strings.TrimSpace(raw), "*") {
		p, err := norm.NormalizePrefix(raw)
		return p, true, err
	}
	n, err := norm.Normalize(raw)
	return n, false, err
}

func display(key string, isRange bool) string {
	if isRange {
		return key + "*"
	}
	return key
}

func describeEntry(en blocklist.Entry) string {
	return fmt.Sprintf("%-17s %-9s reports=%d last_seen=%s source=%q reason=%q",
		display(en.Number, en.Range), en.Status, en.Reports, en.LastSeen.UTC().Format(time.RFC3339), en.Source, en.Reason)
}

func (e *env) normalizer() (*screening.Normalizer, error) {
	return screening.NewNormalizer(e.cfg.Screening.Region, 0)
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
	if err := e.setup(ctx); err != nil {
		return err
	}
	norm, err := e.normalizer()
	if err != nil {
		return err
	}
	n, err := norm.Normalize(number(pos))
	if err != nil {
		return err
	}
	source := "cli"
	if *line != "" {
		source = "line:" + *line
	}
	en, err := e.store.Report(ctx, n, source, *reason, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "reported %s: %s, %d reports\n", n, en.Status, en.Reports)
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
	if err := e.setup(ctx); err != nil {
		return err
	}
	norm, err := e.normalizer()
	if err != nil {
		return err
	}
	opt := blocklist.ImportOptions{
		Normalize:       norm.Normalize,
		NormalizePrefix: norm.NormalizePrefix,
		Status:          blocklist.StatusConfirmed,
		Source:          *source,
		ForceStatus:     *force,
	}
	if *reported {
		opt.Status = blocklist.StatusReported
	}
	if opt.Source == "" {
		opt.Source = "import:" + pos[0]
	}
	res, err := blocklist.Import(ctx, f, e.store, opt)
	for _, r := range res.Rejects {
		fmt.Fprintf(e.stderr, "%s:%d: %v\n", pos[0], r.Line, r.Err)
	}
	fmt.Fprintf(e.stdout, "added %d, updated %d, rejected %d\n", res.Added, res.Updated, res.Rejected)
	if err == nil && res.Rejected > 0 {
		// The good lines are stored; the status tells a script that some
		// were not. A store or read error (exitError) says more and wins.
		e.code = exitRejected
	}
	return err
}

func cmdTrust(ctx context.Context, e *env, args []string) error {
	pos, err := parse(e.flags(), args)
	if err != nil {
		return err
	}
	if len(pos) < 2 || (pos[0] != "list" && len(pos) < 3) {
		return usagef("trust: want add|remove LINE NUMBER, or list LINE")
	}
	verb, line := pos[0], pos[1]
	if verb == "list" && len(pos) != 2 {
		return usagef("trust list LINE takes one line")
	}
	if verb != "add" && verb != "remove" && verb != "list" {
		return usagef("trust: unknown action %q; want add, remove or list", verb)
	}
	if err := e.setup(ctx); err != nil {
		return err
	}
	if err := e.knownLine(line); err != nil {
		return err
	}
	if verb == "list" {
		nums, err := e.store.Trusted(ctx, line)
		return printList(e, nums, err)
	}
	norm, err := e.normalizer()
	if err != nil {
		return err
	}
	n, err := norm.Normalize(number(pos[2:]))
	if err != nil {
		return err
	}
	if verb == "add" {
		err = e.store.Trust(ctx, line, n)
	} else {
		err = e.store.Untrust(ctx, line, n)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s %s for line %s\n", map[string]string{"add": "trusted", "remove": "untrusted"}[verb], n, line)
	return nil
}

func cmdProtect(ctx context.Context, e *env, args []string) error {
	pos, err := parse(e.flags(), args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("protect: want add|remove NUMBER, or list")
	}
	verb := pos[0]
	switch {
	case verb == "list" && len(pos) == 1:
	case (verb == "add" || verb == "remove") && len(pos) > 1:
	default:
		return usagef("protect: want add|remove NUMBER, or list")
	}
	if err := e.setup(ctx); err != nil {
		return err
	}
	if verb == "list" {
		nums, err := e.store.Protected(ctx)
		return printList(e, nums, err)
	}
	norm, err := e.normalizer()
	if err != nil {
		return err
	}
	// Short codes (159, 999) are never valid caller IDs; any parseable number
	// can be protected.
	n, err := norm.NormalizeKey(number(pos[1:]))
	if err != nil {
		return err
	}
	if verb == "add" {
		err = e.store.Protect(ctx, n)
	} else {
		err = e.store.Unprotect(ctx, n)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s %s\n", map[string]string{"add": "protected", "remove": "unprotected"}[verb], n)
	return nil
}

func printList(e *env, items []string, err error) error {
	if err != nil {
		return err
	}
	for _, s := range items {
		fmt.Fprintln(e.stdout, s)
	}
	return nil
}
