# CleanLine. `make run` starts the service on the embedded store with the demo
# config; `make test` runs the whole suite (it needs redis-server, flite,
# pocketsphinx and baresip from Debian: `make deps` installs them).
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

test:
	$(GO) test -count=1 -timeout 12m $(PKGS)

test-race:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

# Benchmarks: medians over 5 runs; feed the output to benchstat to compare.
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

BENCH_PACKAGES := kamailio kamailio-redis-modules
bench-deps: deps
	@missing=""; for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

# Run each fuzz target for FUZZTIME (go test -fuzz takes one target at a time).
FUZZTIME ?= 30s
fuzz:
	@set -e; for spec in \
	  screening:FuzzNormalize \
	  blocklist:FuzzParseImportLine \
	  sip/media:FuzzParseSDP \
	  sip/media:FuzzDecodeTelephoneEvent ; do \
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
# made with, the speech recogniser that checks them, and a real SIP phone.
DEB_PACKAGES := redis-server flite sox pocketsphinx pocketsphinx-en-us baresip sip-tester sipvicious
deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "all Debian packages present"; fi

clean:
	rm -rf bin bench.out
