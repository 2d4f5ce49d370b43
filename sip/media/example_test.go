package media_test

import (
	"context"
	"net/netip"
	"time"

	"github.com/cleanline/cleanline/sip/media"
)

// A warned call as the B2BUA drives it: anchor both legs, answer the
// trunk's offer, play the warning to the line, wait for "1", bridge, and
// close everything when either side hangs up.
func Example() {
	// Once per process: the port pool, the prompts, and the one Player that
	// paces every call's prompts.
	pool, _ := media.NewPortPool(20000, 29999)
	pool.KeepWarm(4096, 2*time.Second)
	defer pool.Close()
	prompts, _ := media.DefaultPrompts()
	player := media.NewPlayer(media.PlayerConfig{})
	defer player.Close()

	// Per call:

	relay, err := media.NewRelay(media.RelayConfig{
		Pool:        pool,
		BindIP:      netip.MustParseAddr("0.0.0.0"),
		AdvertiseIP: netip.MustParseAddr("203.0.113.5"),
		Inactivity:  30 * time.Second,
		OnInactive:  func(media.Side) { /* BYE both legs */ },
	})
	if err != nil {
		return // ErrNoPorts: answer 503
	}
	defer relay.Close() // on BYE from either side: nothing passes after this

	trunkOffer := []byte("...") // the INVITE body from the trunk
	offer, err := media.ParseSDP(trunkOffer)
	if err != nil {
		return // errors.Is(err, media.ErrSDP): answer 488
	}
	relay.Trunk().SetRemoteSDP(offer)
	trunkSDP := media.NewSDPBuilder("cleanline")
	answer, neg, err := trunkSDP.Answer(offer, relay.Trunk().LocalAddr(), []media.Codec{media.CodecPCMA, media.CodecPCMU})
	if err != nil {
		return // ErrNoCommonCodec wraps ErrSDP: 488
	}
	_ = answer // sent to the trunk only once the person chooses to connect

	// Offer to the line, and apply its answer.
	lineSDP := media.NewSDPBuilder("cleanline")
	lineOffer, _ := lineSDP.Offer(relay.Line().LocalAddr(), media.SendRecv, neg.Codec, media.CodecTelephoneEvent)
	_ = lineOffer
	lineAnswer, _ := media.ParseSDP([]byte("...")) // the 200 OK body from the line
	relay.Line().SetRemoteSDP(lineAnswer)
	relay.ResetInactivity() // answered: start the media-timeout clock

	// Digits from RTP (PT from the line's SDP) and from SIP INFO both go
	// to one collector.
	digits := media.NewDigitCollector()
	if te := lineAnswer.TelephoneEvent; te != nil {
		relay.OnTelephoneEvent(media.SideLine, te.PT, digits.Feed)
	}
	warning, _ := prompts.Get(media.PromptWarning)
	ctx := context.Background()
	_ = player.Play(ctx, relay.Line(), warning, lineAnswer.Codecs[0])
	if d, err := digits.Next(ctx, 10*time.Second); err == nil && d == '1' {
		relay.SetBridged(true)
	}
}
