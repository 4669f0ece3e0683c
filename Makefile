# opsctl: `make` builds bin/opsctl, `make test` runs every test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 5s
SKIP_LOG := $(CURDIR)/.test-skips

.PHONY: all build test test-deps vet fmt-check unit fuzz clean FORCE

all: build

build: bin/opsctl

# Static: it must run in a bare initramfs and on old hosts.
bin/opsctl: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/opsctl

test: test-deps build vet fmt-check unit fuzz
	@if [ -s $(SKIP_LOG) ]; then \
	  echo "================ SKIPPED TESTS (component missing) ================"; \
	  cat $(SKIP_LOG); \
	  echo "==================================================================="; \
	fi

test-deps:
	@scripts/testdeps.sh

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi

unit:
	@rm -f $(SKIP_LOG)
	OPSCTL_BIN=$(CURDIR)/bin/opsctl OPSCTL_SKIP_LOG=$(SKIP_LOG) $(GO) test -count=1 -timeout 18m ./...

fuzz:
	@FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz-brief.sh

clean:
	rm -rf bin $(SKIP_LOG)

FORCE:

# Per-command-group targets (benchmarks and the like) live in mk/*.mk.
-include mk/*.mk
