# opsctl sock capture: `make bench-sock` compares, in one run, a direct UNIX
# connection, opsctl capture writing a pcap, and the socat chain with
# tcpdump it replaces (SOCK_BENCH_SIZE over each of 1 and 4 connections).
SOCK_BENCH_SIZE  ?= 1GiB
SOCK_BENCH_CONNS ?= 1,4
# Where the capture files go; both tools write to the same place.
SOCK_BENCH_OUT   ?=

.PHONY: bench-sock
bench-sock: build
	$(GO) run ./pkg/sockspy/internal/sockbench -opsctl $(CURDIR)/bin/opsctl \
	  -size $(SOCK_BENCH_SIZE) -conns $(SOCK_BENCH_CONNS) $(if $(SOCK_BENCH_OUT),-out $(SOCK_BENCH_OUT))
