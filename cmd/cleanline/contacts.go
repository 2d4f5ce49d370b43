package main

import (
	"context"
	"fmt"

	"github.com/cleanline/cleanline/cmd/internal/admin"
)

// trust and protect: each line's trusted contacts, and every line's
// protected numbers.

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
	a, err := e.api(ctx)
	if err != nil {
		return err
	}
	var ack admin.Ack
	switch verb {
	case "list":
		return eachPage(func(q admin.ListQuery) (admin.Page[string], error) {
			return a.TrustList(ctx, admin.LineList{Line: line, ListQuery: q})
		}, func(n string) { fmt.Fprintln(e.stdout, n) })
	case "add":
		ack, err = a.TrustAdd(ctx, admin.LineNumber{Line: line, Number: number(pos[2:])})
	default:
		ack, err = a.TrustRemove(ctx, admin.LineNumberRef{Line: line, Number: number(pos[2:])})
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s %s for line %s\n", map[string]string{"add": "trusted", "remove": "untrusted"}[verb], ack.Number, ack.Line)
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
	a, err := e.api(ctx)
	if err != nil {
		return err
	}
	var ack admin.Ack
	switch verb {
	case "list":
		return eachPage(func(q admin.ListQuery) (admin.Page[string], error) { return a.ProtectList(ctx, q) },
			func(n string) { fmt.Fprintln(e.stdout, n) })
	case "add":
		ack, err = a.ProtectAdd(ctx, admin.NumberIn{Number: number(pos[1:])})
	default:
		ack, err = a.ProtectRemove(ctx, admin.NumberRef{Number: number(pos[1:])})
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s %s\n", map[string]string{"add": "protected", "remove": "unprotected"}[verb], ack.Number)
	return nil
}
