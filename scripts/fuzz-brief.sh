#!/usr/bin/env bash
# Runs every go test -fuzz target of the module briefly (FUZZTIME, default 5s
# each) on top of its committed seed corpus, so `make test` exercises the
# fuzzers and not only their seeds.
#
# Go 1.26's fuzz coordinator can fail a target with a bare "context deadline
# exceeded" when -fuzztime runs out while a worker is still busy
# (golang/go#75804, fixed in Go 1.27). Such a run wrote no failing input and
# printed no panic or test failure; it is run once more, and only a second
# failure of any kind fails the build. Anything else fails at once.
set -euo pipefail
fuzztime=${FUZZTIME:-5s}
go=${GO:-go}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
count=0

# deadline_flake tells whether the log is only the coordinator's race.
deadline_flake() {
  grep -qx '    context deadline exceeded' "$log" &&
    ! grep -qE 'Failing input written|panic:|fatal error:|_test\.go:[0-9]+:' "$log"
}

for pkg in $($go list ./...); do
  for target in $($go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "fuzz: $pkg $target ($fuzztime)"
    for attempt in 1 2; do
      if $go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >"$log" 2>&1; then
        break
      fi
      if [ "$attempt" = 1 ] && deadline_flake; then
        echo "fuzz: $target: Go's fuzztime deadline race (golang/go#75804), no failing input; running it again"
        continue
      fi
      cat "$log"
      exit 1
    done
    count=$((count + 1))
  done
done
echo "fuzz: $count targets ran"
