package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cleanline/cleanline/cmd/internal/admin"
)

// A registration at a server found by DNS SRV names it, so an operator
// sees which of the provider's servers the line hangs on (and that it
// moved after a failure); one at the URI's own server does not.
func TestUpstreamLineNamesTheServer(t *testing.T) {
	u := admin.UpstreamInfo{Trunk: "provider", State: "registered", AOR: "sip:sub@provider.example",
		Contact: "sip:home@192.0.2.10:5060", Since: time.Now(), Server: "sip2.provider.example:5060"}
	if got := upstreamLine(u); !strings.Contains(got, " server=sip2.provider.example:5060") {
		t.Errorf("%q names no server", got)
	}
	u.Server = ""
	if got := upstreamLine(u); strings.Contains(got, "server=") {
		t.Errorf("%q names a server", got)
	}
}
