package media

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// crlf turns a readable SDP literal into wire form.
func crlf(s string) []byte {
	s = strings.TrimLeft(s, "\n")
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}

// A Linphone-style offer: Opus first, dynamic PTs, rtcp-fb, a=rtcp, and a
// video line the B2BUA must refuse with port 0.
var linphoneOffer = crlf(`
v=0
o=linphone 2716 1523 IN IP4 192.168.1.34
s=Talk
c=IN IP4 192.168.1.34
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=rtpmap:98 speex/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp:7079
a=rtcp-fb:* trr-int 1000
m=video 9078 RTP/AVP 96
a=rtpmap:96 VP8/90000
`)

// A carrier trunk offer: several codecs, telephone-event 101, ptime.
var trunkOffer = crlf(`
v=0
o=- 1730000000 1730000000 IN IP4 198.51.100.10
s=SBC
c=IN IP4 198.51.100.10
t=0 0
m=audio 31000 RTP/AVP 8 0 18 9 101
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:9 G722/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=maxptime:40
a=sendrecv
`)

// baresip-style: IPv4, rtcp-mux, static PCMU without rtpmap.
var baresipOffer = crlf(`
v=0
o=- 1588447163 2932618410 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 10016 RTP/AVP 0 8 96
b=AS:77
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-15
a=rtcp-mux
a=sendrecv
a=label:1
a=ssrc:2311 cname:abc
`)

var g711 = []Codec{CodecPCMU, CodecPCMA}

func TestParseSDPRealWorld(t *testing.T) {
	t.Run("linphone", func(t *testing.T) {
		si, err := ParseSDP(linphoneOffer)
		if err != nil {
			t.Fatal(err)
		}
		if si.RTP != netip.MustParseAddrPort("192.168.1.34:7078") || si.RTCP.Port() != 7079 || !si.RTCPExplicit {
			t.Fatalf("addresses %s / %s", si.RTP, si.RTCP)
		}
		var names []string
		for _, c := range si.Codecs {
			names = append(names, c.Name)
		}
		if strings.Join(names, ",") != "opus,speex,speex,PCMU,PCMA,G729" {
			t.Fatalf("codec order %v", names)
		}
		if si.TelephoneEvent == nil || si.TelephoneEvent.PT != 100 {
			t.Fatalf("telephone-event %v, want the 8000 Hz one, PT 100", si.TelephoneEvent)
		}
		if si.Direction != SendRecv || si.Hold {
			t.Fatalf("direction %s hold %v", si.Direction, si.Hold)
		}
		body, neg, err := BuildAnswer(si, netip.MustParseAddrPort("203.0.113.1:40000"), g711)
		if err != nil {
			t.Fatal(err)
		}
		if neg.Codec.PT != 0 || len(neg.Codecs) != 2 || neg.TelephoneEvent.PT != 100 {
			t.Fatalf("negotiated %+v", neg)
		}
		ans := string(body)
		for _, want := range []string{"m=audio 40000 RTP/AVP 0 8 100\r\n", "a=rtpmap:100 telephone-event/8000", "m=video 0 RTP/AVP 96", "c=IN IP4 203.0.113.1", "a=sendrecv"} {
			if !strings.Contains(ans, want) {
				t.Errorf("answer lacks %q:\n%s", want, ans)
			}
		}
		if _, err := ParseSDP(body); err != nil {
			t.Fatalf("our answer does not parse: %v", err)
		}
	})
	t.Run("trunk", func(t *testing.T) {
		si, err := ParseSDP(trunkOffer)
		if err != nil {
			t.Fatal(err)
		}
		if si.Ptime != 20 || si.RTCP != netip.MustParseAddrPort("198.51.100.10:31001") || si.RTCPExplicit {
			t.Fatalf("%+v", si)
		}
		if len(si.Codecs) != 4 || si.Codecs[0] != CodecPCMA || si.TelephoneEvent.Fmtp != "0-15" {
			t.Fatalf("codecs %v te %v", si.Codecs, si.TelephoneEvent)
		}
		// We prefer PCMU, but the offerer's order rules (RFC 3264 §6.1).
		body, neg, err := BuildAnswer(si, netip.MustParseAddrPort("203.0.113.1:40002"), g711)
		if err != nil {
			t.Fatal(err)
		}
		if neg.Codec != CodecPCMA || !strings.Contains(string(body), "m=audio 40002 RTP/AVP 8 0 101\r\n") ||
			!strings.Contains(string(body), "a=fmtp:101 0-15") {
			t.Fatalf("neg %+v answer:\n%s", neg, body)
		}
	})
	t.Run("baresip rtcp-mux", func(t *testing.T) {
		si, err := ParseSDP(baresipOffer)
		if err != nil {
			t.Fatal(err)
		}
		if !si.RTCPMux || si.TelephoneEvent.PT != 96 || si.Codecs[0] != CodecPCMU {
			t.Fatalf("%+v", si)
		}
		body, neg, err := BuildAnswer(si, netip.MustParseAddrPort("127.0.0.1:40004"), []Codec{CodecPCMA})
		if err != nil {
			t.Fatal(err)
		}
		if !neg.RTCPMux || !strings.Contains(string(body), "a=rtcp-mux") || neg.Codec.PT != 8 {
			t.Fatalf("%+v\n%s", neg, body)
		}
	})
}

func TestSDPHold(t *testing.T) {
	cases := []struct {
		name      string
		change    func(string) string
		dir, want Direction
	}{
		{"sendonly", func(s string) string { return strings.Replace(s, "a=sendrecv", "a=sendonly", 1) }, SendOnly, RecvOnly},
		{"inactive", func(s string) string { return strings.Replace(s, "a=sendrecv", "a=inactive", 1) }, Inactive, Inactive},
		{"recvonly", func(s string) string { return strings.Replace(s, "a=sendrecv", "a=recvonly", 1) }, RecvOnly, SendOnly},
		{"c=0.0.0.0", func(s string) string { return strings.Replace(s, "c=IN IP4 198.51.100.10", "c=IN IP4 0.0.0.0", 1) }, SendRecv, RecvOnly},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			si, err := ParseSDP([]byte(c.change(string(trunkOffer))))
			if err != nil {
				t.Fatal(err)
			}
			if si.Direction != c.dir || si.Hold != (c.name != "recvonly") {
				t.Fatalf("direction %s hold %v", si.Direction, si.Hold)
			}
			_, neg, err := BuildAnswer(si, netip.MustParseAddrPort("127.0.0.1:40000"), g711)
			if err != nil || neg.Direction != c.want {
				t.Fatalf("answer direction %v (%v), want %s", neg, err, c.want)
			}
		})
	}
}

func TestSDPErrors(t *testing.T) {
	bad := map[string]string{
		"empty":          "",
		"garbage":        "hello world",
		"no audio":       "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\n",
		"no c=":          "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n",
		"hostname":       "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 sbc.example.com\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n",
		"DTLS-SRTP only": "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 5000 UDP/TLS/RTP/SAVP 0\r\n",
		"bad PT":         "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 5000 RTP/AVP 300\r\n",
		"bad rtpmap":     "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 5000 RTP/AVP 96\r\na=rtpmap:96 opus\r\n",
		"bad rtcp":       "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\na=rtcp:x\r\n",
		"port too large": "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 70000 RTP/AVP 0\r\n",
	}
	for name, body := range bad {
		if si, err := ParseSDP([]byte(body)); !errors.Is(err, ErrSDP) {
			t.Errorf("%s: got %+v, %v; want ErrSDP", name, si, err)
		}
	}

	si, err := ParseSDP(linphoneOffer)
	if err != nil {
		t.Fatal(err)
	}
	off, _ := ParseSDP([]byte("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n"))
	if _, _, err := BuildAnswer(off, netip.MustParseAddrPort("127.0.0.1:40000"), g711); !errors.Is(err, ErrSDP) {
		t.Fatalf("disabled audio: %v", err)
	}
	_, _, err = BuildAnswer(si, netip.MustParseAddrPort("127.0.0.1:40000"), []Codec{{Name: "G722", Rate: 8000}})
	if !errors.Is(err, ErrNoCommonCodec) || !errors.Is(err, ErrSDP) {
		t.Fatalf("no common codec: %v", err)
	}
}

func TestSDPBuilderVersions(t *testing.T) {
	b := NewSDPBuilder("cleanline")
	local := netip.MustParseAddrPort("203.0.113.1:40000")
	parse := func(body []byte) *SessionInfo {
		t.Helper()
		si, err := ParseSDP(body)
		if err != nil {
			t.Fatalf("%v\n%s", err, body)
		}
		return si
	}
	o1, err := b.Offer(local, SendRecv, CodecPCMU, CodecPCMA, CodecTelephoneEvent)
	if err != nil {
		t.Fatal(err)
	}
	s1 := parse(o1)
	if !strings.Contains(string(o1), "m=audio 40000 RTP/AVP 0 8 101\r\n") || s1.TelephoneEvent == nil || len(s1.Codecs) != 2 {
		t.Fatalf("offer:\n%s", o1)
	}
	// RFC 3264 §8: an unchanged description keeps its version...
	o2, _ := b.Offer(local, SendRecv, CodecPCMU, CodecPCMA, CodecTelephoneEvent)
	s2 := parse(o2)
	// ...a changed one (hold) bumps it, with the same session id.
	o3, _ := b.Offer(local, SendOnly, CodecPCMU, CodecPCMA, CodecTelephoneEvent)
	s3 := parse(o3)
	if s1.SessionID != s2.SessionID || s1.SessionID != s3.SessionID {
		t.Fatalf("session id changed: %d %d %d", s1.SessionID, s2.SessionID, s3.SessionID)
	}
	if s2.SessionVersion != s1.SessionVersion || s3.SessionVersion != s1.SessionVersion+1 || s3.Direction != SendOnly {
		t.Fatalf("versions %d %d %d", s1.SessionVersion, s2.SessionVersion, s3.SessionVersion)
	}
	if _, err := b.Offer(local, SendRecv); !errors.Is(err, ErrSDP) {
		t.Fatalf("offer without codecs: %v", err)
	}
	if _, err := BuildOffer(netip.MustParseAddrPort("[2001:db8::1]:40000"), CodecPCMA); err != nil {
		t.Fatal(err)
	}
}
