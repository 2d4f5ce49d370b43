package sip

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cleanline/cleanline/sip/siptest"
)

// selfSigned writes a certificate for 127.0.0.1 and its key as PEM files.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	certFile, keyFile = siptest.Certificate(t, t.TempDir(), "cleanline", ipCleanline)
	return certFile, keyFile, siptest.CertPool(t, certFile)
}

// The TLS listener screens like the others: a confirmed scam number from
// the trunk, over a verified TLS connection, gets 100 then 603 on that
// connection, and the line never rings.
func TestTLSListenerScreens(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	e := newEnv(t, withCfg(func(c *Config) {
		c.Listen = append(c.Listen, Listener{Network: "tls", Addr: ipCleanline + ":0", CertFile: certFile, KeyFile: keyFile})
	}))
	addr := e.s.Addr("tls")
	d := tls.Dialer{
		NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ipTrunk)}, Timeout: 5 * time.Second},
		Config:    &tls.Config{RootCAs: pool, ServerName: ipCleanline, MinVersion: tls.VersionTLS12},
	}
	conn, err := d.DialContext(ctxT(t, 5*time.Second), "tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	local := conn.LocalAddr().(*net.TCPAddr)
	body := "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	invite := fmt.Sprintf("INVITE sip:%s@%s;transport=tls SIP/2.0\r\n"+
		"Via: SIP/2.0/TLS %s;branch=z9hG4bK-tls-1\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:%s@%s>;tag=tls1\r\n"+
		"To: <sip:%s@%s>\r\n"+
		"Call-ID: tls-test-1\r\n"+
		"CSeq: 1 INVITE\r\n"+
		"Contact: <sip:trunk@%s;transport=tls>\r\n"+
		"Content-Type: application/sdp\r\n"+
		"Content-Length: %d\r\n\r\n%s",
		lineNumber, addr, local, callerScam, ipTrunk, lineNumber, addr, local, len(body), body)
	if _, err := conn.Write([]byte(invite)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(got.String(), "SIP/2.0 603") {
		n, err := conn.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("no 603 over TLS (%v); got:\n%s", err, got.String())
		}
	}
	if !strings.HasPrefix(got.String(), "SIP/2.0 100") {
		t.Errorf("first response over TLS is not 100 Trying:\n%s", got.String())
	}
	if err := e.line.NoIncoming(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
}
