# CleanLine. `make run` starts the service on the embedded store with the demo
# config (it needs nothing but Go); `make test` runs the whole suite against
# real peers from Debian (DEB_PACKAGES below), so it first runs `make deps`,
# which installs whichever of them is missing. On a fresh Debian machine with
# only Go and make, `make test` is all it takes.
GO      ?= go
PKGS    ?= ./...
BIN     := bin/cleanline
CONFIG  ?= deploy/demo.yaml

.PHONY: all build run test test-race bench bench-go bench-e2e bench-deps check-kamailio check-sipp fuzz lint deps clean

all: lint test

build:
	$(GO) build -o $(BIN) ./cmd/cleanline
	$(GO) build -o bin/sipload ./cmd/sipload

run: build
	$(BIN) serve --config $(CONFIG)

test: deps
	$(GO) test -count=1 -timeout 12m $(PKGS)

test-race: deps
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

# Benchmarks: each runs 5 times; feed bench.out to benchstat, which gives the
# medians and compares runs.
BENCHTIME ?= 1s
# make bench: the Go benchmarks, then the end-to-end run with issue 5's
# targets table (about 35 minutes on 2 cores).
bench: bench-go bench-e2e

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count 5 -timeout 60m $(PKGS) | tee bench.out

# End-to-end load benchmark against real peers (Kamailio + Redis holding
# 1,000,000 numbers); see deploy/bench/run.sh and BENCHMARKS.md.
bench-e2e: bench-deps
	deploy/bench/run.sh all

# Interop checks with peers nobody here wrote.
check-kamailio: bench-deps
	deploy/kamailio/check.sh
check-sipp: deps
	deploy/sipp/check.sh

# The end-to-end benchmark's peers, on top of the suite's packages (which
# have kamailio itself).
BENCH_PACKAGES := kamailio-redis-modules
bench-deps:
	@$(call apt_install,$(DEB_PACKAGES) $(BENCH_PACKAGES))

# Run each fuzz target for FUZZTIME (go test -fuzz takes one target at a time).
FUZZTIME ?= 30s
fuzz:
	@set -e; for spec in \
	  screening:FuzzNormalize \
	  blocklist:FuzzParseImportLine \
	  sip/media:FuzzParseSDP \
	  sip/media:FuzzDecodeTelephoneEvent \
	  sip:FuzzHeaderList \
	  sip:FuzzMessageSummary \
	  cmd/cleanline:FuzzLoadConfig \
	  cmd/cleanline:FuzzDecodeStrict \
	  blocklist:FuzzReadEventFile \
	  cmd/internal/admin/webhook:FuzzVerify \
	  cmd/internal/admin/api:FuzzRequest ; do \
	  pkg=$${spec%%:*}; fn=$${spec##*:}; \
	  echo "== $$pkg $$fn"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) ./$$pkg; \
	done

STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck
lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)

$(STATICCHECK):
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# Debian packages the suite uses: real Redis, the TTS voice the prompts were
# made with (flite, sox), the speech recogniser that checks them, a real SIP
# phone (baresip), SIPp (sip-tester), the SIPVicious scanners, the browser
# the carer's page is tested in (chromium) and the provider's registrar and
# proxy cleanline registers at (kamailio, with its TLS module), iproute2 (ip) for the tests
# that run in a network namespace of their own, and the DNS server that
# publishes a provider's SRV records (dnsmasq-base). This is the one list: .ci/run
# installs them through `make deps` too.
DEB_PACKAGES := redis-server flite sox pocketsphinx pocketsphinx-en-us baresip sip-tester sipvicious chromium kamailio kamailio-tls-modules iproute2 dnsmasq-base

# make deps installs whichever of DEB_PACKAGES is missing, and does nothing
# (no network) when all are there.
deps:
	@$(call apt_install,$(DEB_PACKAGES))

# apt_install installs those of the Debian packages $(1) that are not
# installed: one apt-get update, then one non-interactive apt-get install;
# as root directly, otherwise through sudo. When it cannot (no sudo, apt
# failing) it names the packages and fails. Off Debian (no dpkg-query) it
# only warns: the tests that need a missing tool say so themselves.
# Debian starts a newly installed kamailio as a service where systemd runs;
# the tests start their own, and make run needs 5060, so it is disabled.
define apt_install
missing=""; \
if ! command -v dpkg-query >/dev/null 2>&1; then \
  echo "make deps: not a Debian system (no dpkg-query): install these yourself: $(1)" >&2; exit 0; \
fi; \
for p in $(1); do \
  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q ' installed$$' || missing="$$missing $$p"; \
done; \
if [ -z "$$missing" ]; then echo "make deps: all Debian packages present"; exit 0; fi; \
sudo=""; \
if [ "$$(id -u)" -ne 0 ]; then \
  if command -v sudo >/dev/null 2>&1; then sudo=sudo; else \
    echo "make deps: missing Debian packages:$$missing" >&2; \
    echo "make deps: not root and no sudo: as root, run  apt-get update && apt-get install$$missing" >&2; \
    exit 1; \
  fi; \
fi; \
echo "make deps: installing:$$missing"; \
if $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
   $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing; then :; else \
  echo "make deps: could not install:$$missing (see apt-get's message above)" >&2; \
  echo "make deps: install them by hand:  $${sudo:+sudo }apt-get install$$missing" >&2; \
  exit 1; \
fi; \
case " $$missing " in *" kamailio "*) \
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet kamailio 2>/dev/null; then \
    echo "make deps: stopping and disabling the kamailio service the package started: the tests run their own, and make run needs port 5060"; \
    $$sudo systemctl disable --now kamailio >/dev/null 2>&1 || true; \
  fi;; \
esac
endef

clean:
	rm -rf bin bench.out
