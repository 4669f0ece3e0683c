#!/usr/bin/env bash
# Runs every go test -fuzz target of the module briefly (FUZZTIME, default 5s
# each) on top of its committed seed corpus, so `make test` exercises the
# fuzzers and not only their seeds.
set -euo pipefail
fuzztime=${FUZZTIME:-5s}
go=${GO:-go}
count=0
for pkg in $($go list ./...); do
  for target in $($go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "fuzz: $pkg $target ($fuzztime)"
    $go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/opsctl-fuzz.$$ 2>&1 || {
      cat /tmp/opsctl-fuzz.$$; rm -f /tmp/opsctl-fuzz.$$; exit 1; }
    count=$((count + 1))
  done
done
rm -f /tmp/opsctl-fuzz.$$
echo "fuzz: $count targets ran"
