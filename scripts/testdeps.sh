#!/usr/bin/env bash
# Installs the real components the integration tests run against.
#
# Each scripts/testdeps/*.list names, one per line, a command (looked up on
# PATH and in sbin) or an absolute path, then the Debian package providing it:
#     dovecot                         dovecot-imapd
#     /usr/lib/xen-4.17/bin/pygrub    xen-utils-4.17
# '#' starts a comment. Missing ones are installed with apt-get when we are
# root on Debian. When that is impossible: under CI=true this fails naming the
# packages; elsewhere it warns, and the tests that need them skip loudly.
set -euo pipefail
cd "$(dirname "$0")/testdeps" 2>/dev/null || exit 0

have() {
  case "$1" in
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] ;;
  esac
}

missing=()
for list in *.list; do
  [ -e "$list" ] || continue
  while read -r what pkg _; do
    case "$what" in ''|'#'*) continue ;; esac
    have "$what" || missing+=("$pkg")
  done < "$list"
done
[ ${#missing[@]} -eq 0 ] && exit 0

# One package may provide several entries.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "testdeps: missing test components from: ${missing[*]}" >&2

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  # One apt at a time, also across checkouts testing in parallel.
  exec 9>/var/lock/opsctl-testdeps.lock
  flock 9
  apt-get update -qq >&2 || true
  if apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
    exit 0
  fi
fi

if [ "${CI:-}" = true ]; then
  echo "testdeps: cannot install test components (Debian packages: ${missing[*]}); CI=true needs them" >&2
  exit 1
fi
echo "testdeps: WARNING: not installed (${missing[*]}); tests needing them will be skipped" >&2
