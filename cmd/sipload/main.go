// Command sipload is CleanLine's SIP load generator and answering endpoint:
// `sipload call` places calls at a fixed rate or in steps and prints latency
// and outcome tables; `sipload answer` answers them, optionally with RTP, and
// reports any packet or request that reached it after a call hung up. The
// engine is in internal/load; this file only parses flags.
//
// sipload shares no code with what it measures: it has its own G.711 and SDP
// code rather than cleanline's sip/media, so that the load peer is an
// independent check on cleanline and not a copy of its mistakes.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cleanline/cleanline/cmd/sipload/internal/load"
	"github.com/emiago/sipgo/sip"
)

// Exit statuses.
const (
	exitOK          = 0
	exitFailed      = 1 // the run completed but --fail-above was exceeded, or answer saw late traffic with --strict
	exitUnreachable = 2
	exitError       = 3
	exitUsage       = 64 // sysexits.h EX_USAGE
)

const usage = `sipload: SIP load generator and answering endpoint

Usage:
  sipload call   --target HOST:PORT [--rate N --duration D | --steps N,N,... --step-duration D] [flags]
  sipload answer --listen IP:PORT [flags]
  sipload flood  --target IP:PORT --rate N --duration D [--bind IP:PORT] [flags]

Run "sipload call -h", "sipload answer -h" or "sipload flood -h" for the flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "call":
		return runCall(ctx, args[1:], stdout, stderr)
	case "answer":
		return runAnswer(ctx, args[1:], stdout, stderr)
	case "flood":
		return runFlood(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "sipload: unknown command %q (want call, answer or flood)\n", args[0])
	return exitUsage
}

// fail prints one line and maps the error to an exit status.
func fail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "sipload %s: %v\n", cmd, err)
	switch {
	case errors.Is(err, load.ErrConfig):
		return exitUsage
	case errors.Is(err, load.ErrUnreachable):
		return exitUnreachable
	}
	return exitError
}

// parseFlags parses and turns flag's own multi-line complaints into one line.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (int, bool) {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return exitOK, false
	case err != nil:
		fmt.Fprintf(stderr, "sipload %s: %v (see sipload %s -h)\n", fs.Name(), err, fs.Name())
		return exitUsage, false
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "sipload %s: unexpected argument %q (see sipload %s -h)\n", fs.Name(), fs.Arg(0), fs.Name())
		return exitUsage, false
	}
	return 0, true
}

// sipLogger is the SIP stack's log. sipgo also logs some transport
// warnings through its process-wide default logger, which only a command may
// set; the engine never touches it.
func sipLogger(verbose bool, stderr io.Writer) *slog.Logger {
	w := io.Discard
	if verbose {
		w = stderr
	}
	l := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sip.SetDefaultLogger(l)
	return l
}

func runCall(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	var (
		cfg      load.CallConfig
		nc       load.NumbersConfig
		rate     = fs.Float64("rate", 0, "calls per second (one step; see --steps)")
		steps    = fs.String("steps", "", "comma-separated rates, one step each, e.g. 250,500,1000")
		duration = fs.Duration("duration", 10*time.Second, "length of the run at --rate")
		stepDur  = fs.Duration("step-duration", 0, "length of each step (default --duration)")
		asJSON   = fs.Bool("json", false, "print the report as JSON on stdout instead of the table")
		quiet    = fs.Bool("quiet", false, "no live progress line")
		verbose  = fs.Bool("v", false, "log SIP stack warnings to stderr")
		failAt   = fs.Float64("fail-above", -1, "exit 1 if any step's failure ratio exceeds this (e.g. 0.01)")
		callsOut = fs.String("calls-out", "", "write one JSON line per call (caller number, INVITE send time, outcome, delays) to this file")
	)
	fs.StringVar(&cfg.Target, "target", "", "SIP peer HOST:PORT (required)")
	fs.StringVar(&cfg.Transport, "transport", "udp", "udp or tcp")
	fs.StringVar(&cfg.Bind, "bind", "", "local IP:PORT to send from (default: the route's source address, any port)")
	fs.StringVar(&cfg.To, "to", "line", "user part of the Request-URI (the line called)")
	fs.DurationVar(&cfg.Hold, "hold", time.Second, "answered calls are hung up after this")
	fs.DurationVar(&cfg.AnswerTimeout, "answer-timeout", 10*time.Second, "no final response by then: CANCEL, counted as timed out")
	fs.IntVar(&cfg.MaxConcurrent, "max-concurrent", 10000, "calls in progress at most; calls due beyond it are not placed and count as failures")
	fs.BoolVar(&cfg.RTP, "rtp", false, "send and check G.711 RTP (20 ms) both ways while answered")
	fs.DurationVar(&cfg.LateRTP, "late-rtp", 0, "misbehave: keep sending RTP this long after the call ended")
	fs.BoolVar(&cfg.LateInfo, "late-info", false, "misbehave: send an INFO in the dialog after it ended")
	fs.Float64Var(&cfg.StopAbove, "stop-above", 0, "stop stepping after a step whose failure ratio exceeds this (0.01 = 1%)")
	fs.DurationVar(&cfg.ProbeTimeout, "probe-timeout", 3*time.Second, "OPTIONS probe of the target before the run; 0 skips it")
	fs.StringVar(&nc.File, "numbers", "", "file of caller numbers, one a line (default: a generated pool)")
	fs.IntVar(&nc.PoolSize, "pool", 100000, "size of the generated caller pool")
	fs.StringVar(&nc.PoolPrefix, "pool-prefix", "+4479460", "prefix of generated caller numbers")
	fs.StringVar(&nc.BlocklistFile, "blocklist", "", "file of blocked numbers to draw --blocked-fraction of the callers from")
	fs.Float64Var(&nc.BlockedFraction, "blocked-fraction", 0, "fraction of calls whose caller comes from --blocklist")
	fs.Uint64Var(&nc.Seed, "seed", 1, "seed for drawing caller numbers")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	switch {
	case *steps != "" && *rate != 0:
		return fail(stderr, "call", fmt.Errorf("%w: give --rate or --steps, not both", load.ErrConfig))
	case *steps != "":
		for _, f := range strings.Split(*steps, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil {
				return fail(stderr, "call", fmt.Errorf("%w: --steps %q: %q is not a number", load.ErrConfig, *steps, f))
			}
			cfg.Steps = append(cfg.Steps, v)
		}
	case *rate != 0:
		cfg.Steps = []float64{*rate}
	}
	cfg.StepDuration = *stepDur
	if cfg.StepDuration == 0 {
		cfg.StepDuration = *duration
	}
	if err := cfg.Validate(); err != nil && !strings.Contains(err.Error(), "no caller numbers") {
		return fail(stderr, "call", err) // flag errors before reading files
	}
	nums, err := load.NewNumbers(nc)
	if err != nil {
		return fail(stderr, "call", err)
	}
	cfg.Numbers = nums
	if *callsOut != "" {
		f, err := os.Create(*callsOut)
		if err != nil {
			return fail(stderr, "call", fmt.Errorf("%w: --calls-out: %w", load.ErrConfig, err))
		}
		defer f.Close()
		bw := bufio.NewWriter(f)
		defer bw.Flush()
		cfg.CallsOut = bw
	}
	cfg.Log = sipLogger(*verbose, stderr)
	if !*quiet {
		cfg.Progress = stderr
	}
	rep, err := load.RunCalls(ctx, cfg)
	if err != nil {
		return fail(stderr, "call", err)
	}
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteTable(stdout)
	}
	if err != nil {
		return fail(stderr, "call", err)
	}
	if *failAt >= 0 {
		for _, s := range rep.Steps {
			if s.FailureRatio > *failAt {
				return exitFailed
			}
		}
	}
	return exitOK
}

func runAnswer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("answer", flag.ContinueOnError)
	var (
		cfg      load.AnswerConfig
		decline  = fs.String("decline", "", "file of caller numbers to answer 603 Decline (a screening peer in tests)")
		duration = fs.Duration("duration", 0, "stop after this long (default: until interrupted)")
		asJSON   = fs.Bool("json", false, "print the report as JSON on stdout instead of the table")
		callsOut = fs.String("calls-out", "", "write one JSON line per answered call to this file")
		strict   = fs.Bool("strict", false, "exit 1 if any call saw traffic after hang-up")
		quiet    = fs.Bool("quiet", false, "no live progress line")
		verbose  = fs.Bool("v", false, "log SIP stack warnings to stderr")
	)
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:5070", "IP:PORT to answer on")
	fs.StringVar(&cfg.Transport, "transport", "udp", "udp or tcp")
	fs.DurationVar(&cfg.Ring, "ring", 10*time.Millisecond, "ring this long after 180 Ringing before answering (with 0 the 200 can overtake the 180 and hide the post-dial delay)")
	fs.BoolVar(&cfg.RTP, "rtp", false, "send and check G.711 RTP (20 ms) while answered")
	fs.DurationVar(&cfg.HangupAfter, "hangup-after", 0, "hang up answered calls ourselves after this (default: wait for the caller)")
	fs.DurationVar(&cfg.Watch, "watch", 500*time.Millisecond, "after hang-up, keep watching each call's port and dialog this long")
	fs.DurationVar(&cfg.Grace, "grace", 20*time.Millisecond, "packets arriving within this of hang-up were in flight and are not late")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if *decline != "" {
		nums, err := load.ReadNumbers(*decline)
		if err != nil {
			return fail(stderr, "answer", err)
		}
		cfg.Decline = make(map[string]bool, len(nums))
		for _, n := range nums {
			cfg.Decline[n] = true
		}
	}
	cfg.KeepCalls = *callsOut != ""
	cfg.Log = sipLogger(*verbose, stderr)
	if !*quiet {
		cfg.Progress = stderr
	}
	a, err := load.StartAnswerer(cfg)
	if err != nil {
		return fail(stderr, "answer", err)
	}
	// Scripts wait for this line before they start calling.
	fmt.Fprintf(stderr, "sipload answer: listening on %s %s\n", cfg.Transport, a.Addr())
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	<-ctx.Done()
	// Hang up what is left and let the watch windows run out; a second
	// signal is not awaited: the bound is the BYE timeout plus --watch.
	closeCtx, cancel := context.WithTimeout(context.Background(), 64*500*time.Millisecond+cfg.Watch)
	defer cancel()
	rep := a.Close(closeCtx)
	if *callsOut != "" {
		if err := writeFile(*callsOut, rep.WriteCalls); err != nil {
			return fail(stderr, "answer", err)
		}
	}
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteTable(stdout)
	}
	if err != nil {
		return fail(stderr, "answer", err)
	}
	if *strict && rep.LateCalls > 0 {
		return exitFailed
	}
	return exitOK
}

func writeFile(path string, fn func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// runFlood sends requests that are never ACKed nor retransmitted (issue 12
// §4) and reports what came back.
func runFlood(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("flood", flag.ContinueOnError)
	var cfg load.FloodConfig
	asJSON := fs.Bool("json", false, "print the report as JSON on stdout instead of a line")
	quiet := fs.Bool("quiet", false, "no live progress line")
	fs.StringVar(&cfg.Target, "target", "", "SIP peer IP:PORT (required)")
	fs.StringVar(&cfg.Bind, "bind", "", "local IP:PORT to send from, e.g. 127.0.0.4:0 (default: any)")
	fs.Float64Var(&cfg.Rate, "rate", 1000, "requests per second")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send")
	fs.DurationVar(&cfg.Linger, "linger", 2*time.Second, "keep counting answers this long after the last request")
	fs.StringVar(&cfg.Method, "method", "INVITE", "request method")
	fs.StringVar(&cfg.To, "to", "flood", "user part of the Request-URI")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if !*quiet {
		cfg.Progress = stderr
	}
	rep, err := load.Flood(ctx, cfg)
	if err != nil {
		return fail(stderr, "flood", err)
	}
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteTable(stdout)
	}
	if err != nil {
		return fail(stderr, "flood", err)
	}
	return exitOK
}
