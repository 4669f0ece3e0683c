# opsctl chain: benchmarks and a quick test run of the group alone.
.PHONY: bench-chain test-chain

# Scans 1,000 projects of the fake GitLab (20 ms per request) and plans a
# 10,000-project graph; "speedup" is against a one-request-at-a-time client.
# Lays out and draws a 1,000-project graph and a 120-project run as SVG, and
# times Chromium loading the 1,000-project picture; serves the web page of a
# 1,000-project run (and its 304 while the run does not change).
bench-chain:
	$(GO) test -run '^$$' -bench 'ScanGitLab1000|Plan' -benchtime 1x -benchmem ./pkg/chain
	$(GO) test -run '^$$' -bench 'Plan|RunPage1000' -benchtime 20x -benchmem ./pkg/chain
	$(GO) test -run '^$$' -bench 'Layout1000|LayoutRun120|ChromiumRenders1000' -benchmem ./pkg/chain/picture

test-chain: bin/opsctl
	OPSCTL_BIN=$(CURDIR)/bin/opsctl $(GO) test -count=1 ./pkg/chain/... ./internal/fakegitlab/...
	OPSCTL_BIN=$(CURDIR)/bin/opsctl $(GO) test -count=1 -run 'Chain' ./cmd/opsctl
