package sip

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/sip/media"
	"github.com/cleanline/cleanline/sip/siptest"
)

// savpOffer is an RTP/SAVP offer from the trunk phone's RTP address with
// one crypto under tag 5.
func savpOffer(t *testing.T) []byte {
	t.Helper()
	key, _ := media.NewCrypto(5, media.SuiteAES80)
	return []byte("v=0\r\no=- 1 1 IN IP4 " + ipTrunk + "\r\ns=-\r\nc=IN IP4 " + ipTrunk + "\r\nt=0 0\r\n" +
		"m=audio 40000 RTP/SAVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n" +
		"a=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:" + base64.StdEncoding.EncodeToString(key.Key) + "\r\n")
}

// Which legs are SRTP: a trunk marked srtp has its plain offer refused
// (488) before the line rings; an RTP/SAVP offer from a trunk not marked
// is taken, and answered RTP/SAVP with our key under its tag, while the
// line (not marked) is offered plain RTP.
func TestSRTPPolicy(t *testing.T) {
	t.Run("required, plain offered", func(t *testing.T) {
		e := newEnv(t, withCfg(func(c *Config) { c.Trunks[0].SRTP = true }))
		out := e.dial(callerOK)
		if res, err := out.WaitFinal(ctxT(t, 5*time.Second)); err != nil || res.StatusCode != sip.StatusNotAcceptableHere {
			t.Fatalf("plain offer from a trunk marked srtp: %v, %v; want 488", res, err)
		}
		if err := e.line.NoIncoming(200 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("offered by a peer not marked", func(t *testing.T) {
		e := newEnv(t, debugLogs)
		ctx := ctxT(t, 5*time.Second)
		out, err := e.trunk.Dial(ctx, e.lineURI(), siptest.DialOptions{FromUser: callerOK, Body: savpOffer(t)})
		if err != nil {
			t.Fatal(err)
		}
		in, err := e.line.Incoming(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if in.Offer.SRTP || strings.Contains(string(in.Req.Body()), "crypto") {
			t.Fatalf("the line (not marked) was offered SRTP:\n%s", in.Req.Body())
		}
		if err := in.Answer(); err != nil {
			t.Fatal(err)
		}
		res, err := out.WaitFinal(ctx)
		if err != nil || res.StatusCode != sip.StatusOK {
			t.Fatalf("caller got %v, %v", res, err)
		}
		ans, err := media.ParseSDP(res.Body())
		if err != nil || !ans.SRTP || len(ans.Crypto) != 1 || ans.Crypto[0].Tag != 5 || ans.Crypto[0].Suite != media.SuiteAES80 {
			t.Fatalf("our answer to an RTP/SAVP offer (%v):\n%s", err, res.Body())
		}
		if err := out.Bye(ctx); err != nil {
			t.Fatal(err)
		}
		e.waitNoCalls()
		// Whoever reads the logs must not read the keys, at any level.
		for _, l := range e.logs.All() {
			if s := fmt.Sprint(l.Message, l.ContextMap()); strings.Contains(s, "inline:") {
				t.Fatalf("an SRTP key was logged: %s", s)
			}
		}
		if e.logs.FilterLevelExact(zap.DebugLevel).Len() == 0 {
			t.Fatal("no Debug entry observed: the check above saw nothing")
		}
	})
}
