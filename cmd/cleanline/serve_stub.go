package main

import "context"

// serveCommand returns the serve subcommand once the B2BUA is wired in.
func serveCommand() (func(context.Context, *env, []string) error, bool) { return nil, false }
