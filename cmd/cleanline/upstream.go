package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cleanline/cleanline/cmd/internal/admin"
)

// upstream: the trunks' registrations at their providers, as the running
// service holds them (README "Registering to the provider").

func cmdUpstream(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	asJSON := fs.Bool("json", false, "print each registration as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("upstream takes no arguments")
	}
	a, err := e.api(ctx)
	if err != nil {
		return err
	}
	return eachPage(func(q admin.ListQuery) (admin.Page[admin.UpstreamInfo], error) { return a.Upstream(ctx, q) },
		func(u admin.UpstreamInfo) {
			if *asJSON {
				b, _ := json.Marshal(u)
				fmt.Fprintln(e.stdout, string(b))
				return
			}
			fmt.Fprintln(e.stdout, upstreamLine(u))
		})
}

// upstreamLine is one registration in a line: "provider registered
// sip:user@host contact=sip:home@192.0.2.10:5060 since 14:02:11 expires
// 15:02:11 next 14:32:11", and what went wrong while it is not.
func upstreamLine(u admin.UpstreamInfo) string {
	clock := func(t time.Time) string { return t.Local().Format(time.TimeOnly) }
	s := fmt.Sprintf("%s %s %s contact=%s since %s", u.Trunk, u.State, u.AOR, u.Contact, clock(u.Since))
	if u.Server != "" {
		s += " server=" + u.Server
	}
	if u.Expires != nil {
		s += " expires " + clock(*u.Expires)
	}
	if u.NextAttempt != nil {
		s += " next " + clock(*u.NextAttempt)
	}
	if u.State != "registered" {
		if u.LastStatus != 0 {
			s += fmt.Sprintf(" last=%d", u.LastStatus)
		}
		if u.LastReason != "" {
			s += fmt.Sprintf(" reason=%q", u.LastReason)
		}
		s += fmt.Sprintf(" failures=%d", u.Failures)
	}
	return s
}
