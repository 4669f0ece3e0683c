# opsctl: `make` builds bin/opsctl, `make test` runs every test.
GO      ?= go
# bash: recipes use pipefail.
SHELL   := /bin/bash
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 5s
SKIP_LOG := $(CURDIR)/.test-skips

PREFIX  ?= /usr/local
DESTDIR ?=
# Debian versions must start with a digit.
DEB_VERSION ?= 0.1.0~git$(shell git rev-list --count HEAD 2>/dev/null || echo 0).$(shell git rev-parse --short HEAD 2>/dev/null || echo 0)

.PHONY: all build test test-deps vet fmt-check unit fuzz clean install deb pkg-tree FORCE

# Where build products go; tests of the packaging point them at temp folders.
BIN   ?= bin/opsctl
BUILD ?= build
DIST  ?= dist

all: build

build: $(BIN)

# Static: it must run in a bare initramfs and on old hosts.
$(BIN): FORCE
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
	@OPSCTL_BIN=$(CURDIR)/bin/opsctl OPSCTL_SKIP_LOG=$(SKIP_LOG) $(GO) test -count=1 -timeout 18m ./... || { \
	  if [ -s $(SKIP_LOG) ]; then echo "SKIPPED TESTS (component missing):"; cat $(SKIP_LOG); fi; exit 1; }

fuzz:
	@FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz-brief.sh

# Man pages and completions come from the command tree of the binary itself.
pkg-tree: build
	rm -rf $(BUILD)/pkg && mkdir -p $(BUILD)/pkg/doc
	cp $(BIN) $(BUILD)/pkg/opsctl
	$(BIN) gen-docs --man $(BUILD)/pkg/man --completions $(BUILD)/pkg/completions
	gzip -9n $(BUILD)/pkg/man/*.1
	cp docs/*.md $(BUILD)/pkg/doc/ && cp packaging/copyright $(BUILD)/pkg/doc/copyright
	printf 'opsctl (%s) unstable; urgency=medium\n\n  * Built from git %s.\n\n -- opsctl maintainers <opsctl@example.org>  %s\n' \
	  '$(DEB_VERSION)' "$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$$(date -R)" | gzip -9n > $(BUILD)/pkg/doc/changelog.gz

deb: pkg-tree
	mkdir -p $(DIST)
	sed 's|src: build/pkg/|src: $(BUILD)/pkg/|' packaging/nfpm.yaml > $(BUILD)/nfpm.yaml
	OPSCTL_DEB_VERSION='$(DEB_VERSION)' $(GO) tool nfpm package --config $(BUILD)/nfpm.yaml --packager deb --target $(DIST)/

# Debian's zsh reads /usr/local/share/zsh/site-functions (the admin's) and
# /usr/share/zsh/vendor-completions (packages'), not $(PREFIX)/share/zsh/vendor-completions.
ZSH_COMPLETIONS ?= $(if $(filter /usr,$(PREFIX)),/usr/share/zsh/vendor-completions,$(PREFIX)/share/zsh/site-functions)

# Installs what the package holds; units refer to $(PREFIX)/bin/opsctl.
install: pkg-tree
	install -D -m 0755 $(BUILD)/pkg/opsctl $(DESTDIR)$(PREFIX)/bin/opsctl
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)/etc/default
	install -m 0644 $(BUILD)/pkg/man/*.1.gz $(DESTDIR)$(PREFIX)/share/man/man1/
	install -D -m 0644 $(BUILD)/pkg/completions/opsctl.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/opsctl
	install -D -m 0644 $(BUILD)/pkg/completions/_opsctl $(DESTDIR)$(ZSH_COMPLETIONS)/_opsctl
	install -D -m 0644 $(BUILD)/pkg/completions/opsctl.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/opsctl.fish
	for unit in packaging/systemd/*; do \
	  sed 's|/usr/bin/opsctl|$(PREFIX)/bin/opsctl|' $$unit > $(DESTDIR)$(PREFIX)/lib/systemd/system/$$(basename $$unit); done
	for f in packaging/default/*; do \
	  [ -e $(DESTDIR)/etc/default/$$(basename $$f) ] || install -m 0644 $$f $(DESTDIR)/etc/default/; done

clean:
	rm -rf bin $(BUILD) $(DIST) $(SKIP_LOG)

FORCE:

# Per-command-group targets (benchmarks and the like) live in mk/*.mk.
-include mk/*.mk
