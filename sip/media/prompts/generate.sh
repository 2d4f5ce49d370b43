#!/bin/sh
# Regenerates the default CleanLine prompts embedded in the binary.
#
# Needs Debian's flite (voice "rms": Debian's US-English pocketsphinx model
# understands it far better than espeak-ng's default) and sox. Output is
# G.711 mu-law WAV, 8 kHz mono: the wire format, so nothing is lost at play
# time and the files stay small (8 KB per second).
#
#   apt-get install -y flite sox
#   sh sip/media/prompts/generate.sh            # every prompt
#   sh sip/media/prompts/generate.sh barred     # only the prompts named
#
# sox dithers with random noise; -R makes it repeat itself, so a prompt
# regenerated from the same text is the same file. (The prompts made
# before -R differ from a regenerated one in that noise only.)
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

say() { # name text
	if [ -n "$only" ] && ! echo " $only " | grep -q " $1 "; then
		return
	fi
	flite -voice rms -t "$2" -o "$tmp/$1.wav"
	# rate 8k applies sox's own low-pass before decimating; norm -3 keeps
	# peaks clear of G.711 clipping; 0.3 s of silence on each side so the
	# first syllable is not lost while a phone's jitter buffer settles.
	sox -R "$tmp/$1.wav" -r 8000 -c 1 -e mu-law -b 8 "$1.wav" \
		norm -3 pad 0.3 0.3
}
only="$*"

say warning "Warning. This caller may be a scam. \
The police and your bank will never ask for your pin, or your bank details. \
They will never ask you to withdraw cash, or to hand anything to a courier. \
Press 1 to connect. Press 3 to report this caller. Or hang up."
say blocked "The number you have called does not accept calls from this number. Goodbye."
say line_clear "Your line is clear. No other call is attached to your line."
say line_busy "Warning. Another call is still attached to your line. Please hang up, and try again in a moment."
say reported "Thank you. This number has been reported."
say barred "Sorry. This number cannot be called from this line. Goodbye."
