# opsctl pygrub: its tests, fuzzers and a speed comparison with pygrub itself.
.PHONY: test-pygrub fuzz-pygrub bench-pygrub

test-pygrub: build
	$(GO) test -count=1 ./pkg/pygrubfix/
	OPSCTL_BIN=$(CURDIR)/bin/opsctl $(GO) test -count=1 -run 'Pygrub' ./cmd/opsctl/

fuzz-pygrub:
	for t in FuzzGrub2Parse FuzzLegacyParse FuzzExtlinuxParse FuzzPatchSource FuzzGuestPathResolution; do \
	  $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) ./pkg/pygrubfix/ || exit 1; done

# Reads the EL7 config N times with opsctl's parser and with pygrub 4.17's
# GrubConf.py (in one python process, so python's start-up is not counted)
# and prints both rates and their ratio.
bench-pygrub:
	$(GO) test -run '^$$' -bench 'BenchmarkGrub2ParseVsPygrub' -benchtime 2000x ./pkg/pygrubfix/
