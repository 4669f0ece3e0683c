# opsctl imap-auth: `make bench-imap` compares 200 sequential successful
# logins against one Dovecot (high-performance mode) by the old Perl helper
# (Net::IMAP::Simple), `opsctl imap-auth check` and `opsctl imap-auth serve`,
# and prints median/p99 latency and the ratios. Needs root (it runs Dovecot).
BENCH_IMAP_LOGINS ?= 200

.PHONY: bench-imap
bench-imap: test-deps build
	OPSCTL_BIN=$(CURDIR)/bin/opsctl $(GO) test -count=1 -run '^$$' -bench '^BenchmarkIMAPLogins$$' \
	  -benchtime $(BENCH_IMAP_LOGINS)x ./pkg/imapauth/
