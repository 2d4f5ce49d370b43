// Command cleanline is CleanLine's daemon and its operators' tool: serve
// calls, check a number, and manage the blocklist, trusted contacts and
// protected numbers. It only wires the packages together.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// Exit statuses. check uses 0, 1 and 2 for its verdict, so errors start at 3.
const (
	exitOK    = 0
	exitWarn  = 1
	exitBlock = 2
	exitError = 3
	// exitRejected: import stored the good lines but rejected some (each is
	// named on stderr), so a script can tell a clean import from a partial one.
	exitRejected = 4
	exitUsage    = 64 // sysexits.h EX_USAGE
)

// usage is `cleanline help`. TestUsageListsEveryFlag holds it to the
// commands' FlagSets: every flag named, none that does not exist.
const usage = `cleanline: call screening for landlines

Usage:
  cleanline serve   [--grace D] [--cpuprofile FILE] [--memprofile FILE]
  cleanline check   NUMBER [--line L] [--international | --dial] [--json]
  cleanline block   add NUMBER|RANGE* [--reason R] [--source S] [--reported [--force]]
  cleanline block   remove NUMBER|RANGE*
  cleanline block   list [--json]
  cleanline block   add|remove NUMBER --line L
  cleanline block   list --line L [--json]
  cleanline report  NUMBER [--line L] [--reason R]
  cleanline import  FILE [--reported] [--force] [--source S]
  cleanline trust   add|remove LINE NUMBER
  cleanline trust   list LINE
  cleanline protect add|remove NUMBER
  cleanline protect list
  cleanline lines   [--json]
  cleanline calls   [recent] [--line L] [--caller NUMBER] [--since D] [--limit N] [--json]
  cleanline calls   live [--line L] [--json]
  cleanline calls   end ID [--line L]
  cleanline upstream [--json]     (the trunks' registrations at their providers)
  cleanline reload                (the running serve re-reads its configuration file)
  cleanline version               (or cleanline --version)
  cleanline help                  (or -h, --help, also after a command)

Flags for every command (before or after the arguments):
  --config FILE   configuration file (default $CLEANLINE_CONFIG)
  --store URL     file:PATH (default file:./cleanline.db), redis://HOST:PORT[/DB],
                  redis-sentinel://HOST:PORT,.../MASTER, redis-cluster://HOST:PORT,...

Flags of one command:
  serve   --grace D          how long shutdown waits for calls to end (default 10s)
          --cpuprofile FILE  write a CPU profile (go tool pprof) to FILE until shutdown
          --memprofile FILE  write a heap profile to FILE at shutdown
  check   --line L           the line being called, or dialling (default "default")
          --international    as if the call came on an international trunk
          --dial             what the line gets when it dials NUMBER: allow or bar
          --json             print the verdict as JSON
  block   --reason R         why the number is blocked
          --source S         who says so (default cli)
          --reported         only reported (warn), not confirmed (block)
          --force            with --reported, downgrade a number already confirmed
          --json             list as JSON lines
          --line L           block for line L alone (its own list), not for every line
  report  --line L           the line that reports it, recorded as source line:L
          --reason R         what happened (default reported)
  import  --reported         import as reported (warn) instead of confirmed (block)
          --force            let reported lines downgrade numbers already confirmed
          --source S         source for lines that name none (default import:FILE)
  lines   --json             print each line as JSON
  calls   --line L           only line L's calls (and end: only if the call is L's)
          --caller NUMBER    recent: only calls from (or to) NUMBER
          --since D          recent: only calls of the last D, e.g. 24h; 0s: all (default 0s)
          --limit N          recent: at most N calls, newest first (default 20)
          --json             print each call as JSON (recent: the record as kept)
  upstream --json           print each registration as JSON

When the config names admin.listen and cleanline serve answers there, every
command goes through its API (token: $CLEANLINE_TOKEN, or admin.cli_token_file);
otherwise it opens the store itself (--store always does). calls live,
calls end and upstream need the running service, and so does reload (or send
serve SIGHUP);
recent calls are read from the store's event log either way.

When the config lists sip.lines, trust's LINE and check's --line must be one
of them.

A reported entry never downgrades one already confirmed (it stays blocked)
unless --force is given.

check exits 0 for allow, 1 for warn, 2 for block (--dial: 0 allow, 2 bar);
import exits 4 when it rejected some lines (it still imports the others);
every command exits 3 on errors and 64 on usage errors.
`

func main() {
	quietRedis()
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
	global, args, err := leadingFlags(args)
	if err != nil || len(args) == 0 {
		if err == nil {
			err = usagef("no command given")
		}
		fmt.Fprintf(stderr, "cleanline: %v (run cleanline help)\n", err)
		return exitUsage
	}
	// Flags typed before the command apply as if typed after it.
	name, rest := args[0], append(args[1:len(args):len(args)], global...)
	switch name {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "version", "-version", "--version":
		if len(args) > 1 {
			fmt.Fprintf(stderr, "cleanline: version takes no arguments (run cleanline help)\n")
			return exitUsage
		}
		fmt.Fprintln(stdout, version())
		return exitOK
	}
	fn, ok := commands()[name]
	if !ok {
		fmt.Fprintf(stderr, "cleanline: unknown command %q (run cleanline help)\n", name)
		return exitUsage
	}
	e := &env{name: name, stdout: stdout, stderr: stderr}
	defer e.close()
	return e.exit(fn(ctx, e, rest))
}

// commands are the subcommands that run with an env, by name.
func commands() map[string]func(context.Context, *env, []string) error {
	cmds := map[string]func(context.Context, *env, []string) error{
		"check":    cmdCheck,
		"block":    cmdBlock,
		"report":   cmdReport,
		"import":   cmdImport,
		"trust":    cmdTrust,
		"protect":  cmdProtect,
		"lines":    cmdLines,
		"calls":    cmdCalls,
		"upstream": cmdUpstream,
		"reload":   cmdReload,
	}
	if serve, ok := serveCommand(); ok {
		cmds["serve"] = serve
	}
	return cmds
}

// version is what `cleanline version` prints: the module version from the
// build information ("(devel)" for a build from a checkout), the VCS
// revision and whether the tree was modified when the build recorded them,
// and the Go release.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return formatVersion(bi)
}

func formatVersion(bi *debug.BuildInfo) string {
	if bi == nil {
		return "cleanline (devel)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	s := "cleanline " + v
	var rev, at, modified string
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			rev = kv.Value
		case "vcs.time":
			at = kv.Value
		case "vcs.modified":
			modified = kv.Value
		}
	}
	if rev != "" {
		s += ", revision " + rev
		if at != "" {
			s += " of " + at
		}
		if modified == "true" {
			s += ", modified"
		}
	}
	if bi.GoVersion != "" {
		s += ", " + bi.GoVersion
	}
	return s
}

// leadingFlags splits off the flags typed before the command
// ("cleanline --store redis://h:6379 check 12").
func leadingFlags(args []string) (flags, rest []string, err error) {
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		a := args[0]
		switch {
		case a == "-h" || a == "--help" || a == "-help" || a == "-version" || a == "--version":
			return flags, args, nil
		case strings.Contains(a, "="):
			flags, args = append(flags, a), args[1:]
		case strings.TrimLeft(a, "-") == "store" || strings.TrimLeft(a, "-") == "config":
			if len(args) < 2 {
				return nil, nil, usagef("flag needs an argument: %s", a)
			}
			flags, args = append(flags, a, args[1]), args[2:]
		default:
			return nil, nil, usagef("unknown flag %s before the command", a)
		}
	}
	return flags, args, nil
}

// quietRedis stops go-redis printing its own log lines (dial failures and
// the like) on stderr: cleanline reports store errors itself, once, clearly.
func quietRedis() { redis.SetLogger(discardLogger{}) }

type discardLogger struct{}

func (discardLogger) Printf(context.Context, string, ...interface{}) {}
