package pygrubfix

import "strings"

// PluginPath is where the kernel-install plugin goes in the guest.
// kernel-install runs /etc/kernel/install.d/*.install and
// /usr/lib/kernel/install.d/*.install in the order of their names, for
// add and for remove: 99 runs after grub2's 20-grub.install has written or
// removed the kernel's entry and dracut's 50-dracut.install has built its
// initramfs. It is the name the KickstartPost section of earlier releases
// installed a smaller hook under, so that one replaces it.
const PluginPath = "/etc/kernel/install.d/99-opsctl-pygrub-menulst.install"

// PluginScript is the kernel-install plugin that keeps /boot/grub/grub.cfg
// (for pygrub 4.17) and /boot/grub/menu.lst (for pygrub 4.1) current in a
// Boot Loader Spec guest: at every kernel add and remove it reads the
// entries, grubenv and grub.cfg as opsctl does and writes the same two
// files as PlanInstall (byte for byte: the tests compare them), keeping
// saved_entry's choice. In a guest without BLS entries it runs the EL7
// generator of the KickstartPost section when that is installed, else
// does nothing.
//
// It runs as root in the guest at every kernel update, so it is careful
// in the way opsctl is: it writes only in /boot/grub (created 0755 when
// missing), refuses a /boot/grub or a target that is a symlink or not a
// regular file, writes temporary files made there by mktemp (never in
// /tmp), renames them into place, keeps a file it did not write as
// FILE.orig (FILE.orig.N when taken) by a hard link, and leaves both files
// as they were when there is nothing to boot. Every path is prefixed with
// $OPSCTL_MENULST_ROOT (empty in the guest), so it also runs against a
// folder (%post --nochroot, tests).
func PluginScript() string {
	// In single quotes: Xen's.
	quoted := func(s string) string { return strings.ReplaceAll(s, "'", `'\''`) }
	return strings.NewReplacer(
		"@PLUGIN_MARKER_LINE@", pluginMarker,
		"@PLUGIN_MARKER@", quoted(pluginMarker),
		"@GRUB2_MARKER@", quoted(grub2Marker),
		"@MENU_MARKER@", quoted(menuLstMarker),
		"@KICKSTART_MARKER@", quoted(kickstartMarker),
		"@GENERATOR_MARKER@", quoted(generatorMarker),
		"@AWK@", blsAwk,
	).Replace(pluginTemplate)
}

const pluginTemplate = `#!/bin/sh
@PLUGIN_MARKER_LINE@
# current for Xen's pygrub from the Boot Loader Spec entries grub boots
# (pygrub 4.17 reads /boot/grub/grub.cfg first, 4.1 /boot/grub/menu.lst).
# Installed by opsctl pygrub menulst --install-hook or --kickstart;
# kernel-install runs it as: THIS add|remove KERNEL-VERSION ENTRY-DIR [IMAGE...]
set -eu
umask 022
LC_ALL=C
export LC_ALL
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
R="${OPSCTL_MENULST_ROOT:-}"
# The awk to run (the tests run mawk, gawk and busybox's).
awk="${OPSCTL_PYGRUB_AWK:-awk}"
me=opsctl-pygrub-menulst.install

case "${1:-}" in
add) exclude= ;;
remove) exclude="${2:-}" ;;
*) exit 0 ;;
esac

# written_by_opsctl FILE: one of opsctl's marker lines is among its first three.
written_by_opsctl() {
  head -n 3 "$1" | tr -d '\r' | grep -qxF \
    -e '@GRUB2_MARKER@' -e '@MENU_MARKER@' -e '@PLUGIN_MARKER@' \
    -e '@KICKSTART_MARKER@' -e '@GENERATOR_MARKER@'
}

# The grub config that runs blscfg, among those pygrub 4.17 searches.
cfg=
for c in /boot/grub/grub.cfg /grub/grub.cfg /boot/grub2/grub.cfg /grub2/grub.cfg; do
  [ -f "$R$c" ] || continue
  written_by_opsctl "$R$c" && continue
  if $awk '{ sub(/^[ \t\r]+/, ""); sub(/[ \t\r]+$/, ""); n = index($0, " "); w = n ? substr($0, 1, n - 1) : $0
            if (w == "blscfg" || w == "bls_import") { found = 1; exit } }
          END { exit !found }' "$R$c"; then
    cfg=$c
    break
  fi
done
if [ -z "$cfg" ]; then
  # Not a BLS guest: the EL7 generator of opsctl pygrub menulst --kickstart.
  gen="$R/usr/local/sbin/opsctl-pygrub-menulst"
  if [ -z "${OPSCTL_PYGRUB_FROM_GENERATOR:-}" ] && [ -x "$gen" ]; then
    if [ "$1" = remove ]; then
      OPSCTL_MENULST_EXCLUDE="$exclude"
      export OPSCTL_MENULST_EXCLUDE
    fi
    OPSCTL_PYGRUB_FROM_PLUGIN=1
    export OPSCTL_PYGRUB_FROM_PLUGIN
    exec "$gen"
  fi
  exit 0
fi

# Entry paths are relative to the boot file system: /boot when it is a
# file system of its own. blscfg reads /loader/entries there, and
# /boot/loader/entries when that folder is not there.
prefix=
if $awk '$1 !~ /^#/ && $2 == "/boot" { found = 1 } END { exit !found }' "$R/etc/fstab" 2>/dev/null; then
  prefix=/boot
fi
dir=$prefix/loader/entries
[ -d "$R$dir" ] || dir=$prefix/boot/loader/entries
if [ ! -d "$R$dir" ]; then
  echo "$me: $cfg runs blscfg but there is no $prefix/loader/entries folder; /boot/grub left as it was" >&2
  exit 1
fi

grubenv="${cfg%/*}/grubenv"
env_file=/dev/null
env_nl=1
if [ -f "$R$grubenv" ]; then
  env_file="$R$grubenv"
  # awk cannot see whether the last line ends with a newline; grub drops
  # a last line without one.
  [ -z "$(tail -c 1 "$env_file")" ] || env_nl=0
fi

out="$R/boot/grub"
if [ -L "$out" ] || { [ -e "$out" ] && [ ! -d "$out" ]; }; then
  echo "$me: $out is not a folder; nothing written" >&2
  exit 1
fi
[ -d "$out" ] || mkdir -m 0755 "$out"
for f in grub.cfg menu.lst; do
  if [ -L "$out/$f" ] || { [ -e "$out/$f" ] && [ ! -f "$out/$f" ]; }; then
    echo "$me: $out/$f is not a regular file; nothing written" >&2
    exit 1
  fi
done

gtmp=
mtmp=
trap 'rm -f "$gtmp" "$mtmp"' EXIT
gtmp=$(mktemp "$out/.grub.cfg.XXXXXX")
mtmp=$(mktemp "$out/.menu.lst.XXXXXX")

set --
for f in "$R$dir"/*.conf; do
  [ -f "$f" ] && set -- "$@" "$f"
done
if ! $awk -v cfg="$cfg" -v dir="$dir" -v env_nl="$env_nl" -v exclude="$exclude" \
    -v grub2_out="$gtmp" -v menu_out="$mtmp" \
    -v grub2_marker='@GRUB2_MARKER@' -v menu_marker='@MENU_MARKER@' \
    -f /dev/stdin "$env_file" "$R$cfg" "$@" <<'OPSCTL_AWK'
@AWK@OPSCTL_AWK
then
  echo "$me: /boot/grub left as it was" >&2
  exit 1
fi
chmod 0644 "$gtmp" "$mtmp"

# keep FILE: a FILE that opsctl did not write is kept as FILE.orig (or
# FILE.orig.N) before it is replaced.
keep() {
  [ -f "$1" ] || return 0
  written_by_opsctl "$1" && return 0
  n=0
  b="$1.orig"
  while [ -e "$b" ] || [ -L "$b" ]; do
    n=$((n + 1))
    b="$1.orig.$n"
  done
  ln "$1" "$b"
}
keep "$out/grub.cfg"
mv -f "$gtmp" "$out/grub.cfg"
keep "$out/menu.lst"
mv -f "$mtmp" "$out/menu.lst"
trap - EXIT
`

// blsAwk reads the files the plugin names (grubenv, grub.cfg, then the
// entry files) and writes grub.cfg and menu.lst. It is POSIX awk (gawk of
// EL, mawk and busybox run it), with LC_ALL=C: strings are bytes.
const blsAwk = blsAwkFunctions + blsAwkMain

// blsAwkFunctions are blscfg's rules in awk (the fuzz tests call them).
const blsAwkFunctions = `function isdigit(c) { return c != "" && index("0123456789", c) > 0 }
function isalpha(c) { return c != "" && index("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", c) > 0 }
function isalnum(c) { return isdigit(c) || isalpha(c) }
function ltrim(s) { sub(/^[ \t]+/, "", s); return s }
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }

# readfile(f): the bytes of f, lines joined with "\n" (a final newline
# added; the caller drops it when the file had none).
function readfile(f,   line, text, r) {
	text = ""
	while ((r = (getline line < f)) > 0) text = text line "\n"
	close(f)
	return text
}

# grubenv: load_env's reading of a grubenv block into ENVV/ENVSET.
function parse_grubenv(data,   sig, p, n, c, eq, name, value) {
	sig = "# GRUB Environment Block\n"
	if (substr(data, 1, length(sig)) != sig) return 0
	n = length(data)
	p = length(sig) + 1
	while (p <= n) {
		if (substr(data, p, 1) == "#") {
			eq = index(substr(data, p), "\n")
			if (!eq) break
			p += eq
			continue
		}
		eq = index(substr(data, p), "=")
		if (!eq) break
		name = substr(data, p, eq - 1)
		p += eq
		value = ""
		while (p <= n && (c = substr(data, p, 1)) != "\n") {
			if (c == "\\") {
				p++
				if (p > n) break
				c = substr(data, p, 1)
			}
			value = value c
			p++
		}
		if (p > n) break
		GRUBENV[name] = value
		p++
	}
	return 1
}

function expand_string(s,   out, i, n, c, j, e, name) {
	out = ""
	n = length(s)
	for (i = 1; i <= n; i++) {
		c = substr(s, i, 1)
		if (c != "$") { out = out c; continue }
		if (substr(s, i + 1, 1) == "{") {
			e = index(substr(s, i + 2), "}")
			if (e) {
				name = substr(s, i + 2, e - 1)
				if (name in ENV) out = out ENV[name]
				i += 1 + e
				continue
			}
		}
		j = i + 1
		while (j <= n && (isalnum(substr(s, j, 1)) || substr(s, j, 1) == "_")) j++
		if (j == i + 1) { out = out "$"; continue }
		name = substr(s, i + 1, j - i - 1)
		if (name in ENV) out = out ENV[name]
		i = j - 1
	}
	return out
}

function is_assignment(s,   eq, i, c) {
	eq = index(s, "=")
	if (eq <= 1) return 0
	for (i = 1; i < eq; i++) {
		c = substr(s, i, 1)
		if (!(c == "_" || isalpha(c) || (i > 1 && isdigit(c)))) return 0
	}
	return 1
}

function assign(s,   eq, name, value, n, b) {
	if (!is_assignment(s)) return
	eq = index(s, "=")
	name = substr(s, 1, eq - 1)
	value = substr(s, eq + 1)
	sub(/[ \t]+$/, "", value)
	n = length(value)
	if (n >= 2 && substr(value, 1, 1) == "\"" && substr(value, n, 1) == "\"") {
		value = expand_string(substr(value, 2, n - 2))
	} else if (n >= 2 && substr(value, 1, 1) == "'" && substr(value, n, 1) == "'") {
		value = substr(value, 2, n - 2)
	} else {
		b = match(value, /[ \t]/)
		if (b) value = substr(value, 1, b - 1)
		value = expand_string(value)
	}
	ENV[name] = value
}

function var_name(w,   n) {
	gsub(/^"+/, "", w)
	gsub(/"+$/, "", w)
	if (substr(w, 1, 2) == "${") {
		n = length(w)
		if (n > 3 && substr(w, n, 1) == "}") return substr(w, 3, n - 3)
		return ""
	}
	if (substr(w, 1, 1) == "$" && length(w) > 1 && w !~ /[\/{}]/) return substr(w, 2)
	return ""
}

function grub_test(s,   f, n, name, i, k) {
	s = trim(s)
	if (substr(s, length(s) - 5) == "; then") s = substr(s, 1, length(s) - 6)
	else if (substr(s, length(s) - 4) == ";then") s = substr(s, 1, length(s) - 5)
	else if (substr(s, length(s) - 4) == " then") s = substr(s, 1, length(s) - 5)
	s = trim(s)
	n = split(s, f, /[ \t\n]+/)
	# split with a leading separator gives an empty first field in some awks
	k = 0
	for (i = 1; i <= n; i++) if (f[i] != "") T[++k] = f[i]
	n = k
	if (n < 3 || T[1] != "[" || T[n] != "]") return 0
	if (n == 4 && T[2] == "-z") { name = var_name(T[3]); if (name != "") return !(name in ENV) || ENV[name] == "" }
	if (n == 4 && T[2] == "-n") { name = var_name(T[3]); if (name != "") return (name in ENV) && ENV[name] != "" }
	if (n == 3) { name = var_name(T[2]); if (name != "") return (name in ENV) && ENV[name] != "" }
	if (n == 4 && (T[2] == "-f" || T[2] == "-s") && length(T[3]) >= 8 && substr(T[3], length(T[3]) - 7) == "/grubenv") return HAVE_GRUBENV
	return 0
}

function active() { return SP == 0 || ACT[SP] }
function parent_active() { return SP < 2 || ACT[SP - 1] }

# The top level of grub.cfg, as far as opsctl models grub's script.
function run_cfg(data,   nl, i, line, sp, word, rest, c, k) {
	nl = split(data, CFGL, "\n")
	SP = 0
	depth = 0
	for (i = 1; i <= nl; i++) {
		line = CFGL[i]
		sub(/^[ \t\r]+/, "", line)
		sub(/[ \t\r]+$/, "", line)
		if (line == "" || substr(line, 1, 1) == "#") continue
		sp = index(line, " ")
		word = sp ? substr(line, 1, sp - 1) : line
		rest = sp ? ltrim(substr(line, sp + 1)) : ""
		if (depth > 0) {
			if (substr(line, 1, 1) == "}") depth--
			else if (substr(line, length(line)) == "{") depth++
			continue
		}
		if (word == "menuentry" || word == "submenu" || word == "function") {
			if (substr(line, length(line)) == "{") depth++
			continue
		}
		if (word == "if") {
			c = grub_test(rest)
			SP++
			ACT[SP] = active_below() && c
			TAKEN[SP] = c
			continue
		}
		if (word == "elif") {
			if (SP > 0) {
				c = !TAKEN[SP] && grub_test(rest)
				ACT[SP] = parent_active() && c
				TAKEN[SP] = TAKEN[SP] || c
			}
			continue
		}
		if (word == "else") {
			if (SP > 0) {
				ACT[SP] = parent_active() && !TAKEN[SP]
				TAKEN[SP] = 1
			}
			continue
		}
		if (word == "fi") {
			if (SP > 0) SP--
			continue
		}
		if (!active()) continue
		if (word == "load_env") {
			if (HAVE_GRUBENV) for (k in GRUBENV) ENV[k] = GRUBENV[k]
		} else if (word == "set") {
			assign(rest)
		} else if (is_assignment(line)) {
			assign(line)
		}
	}
}
# active_below: whether the frames already on the stack are active (the
# new frame is pushed after it is asked).
function active_below() { return SP < 2 || ACT[SP - 1] }

# One entry file as blscfg's read_entry reads it.
function read_entry(f, id,   line, r, sep, key, val, k) {
	NE++
	EID[NE] = id
	k = 0
	while ((r = (getline line < f)) > 0) {
		gsub(/\r/, "", line)
		line = ltrim(line)
		if (substr(line, 1, 1) == "#") continue
		sep = index(line, " ")
		if (!sep) sep = index(line, "\t")
		if (!sep || sep == length(line)) break
		key = substr(line, 1, sep - 1)
		val = ltrim(substr(line, sep + 1))
		k++
		KEY[NE, k] = key
		VAL[NE, k] = val
	}
	close(f)
	NK[NE] = k
}

function first(e, key,   k) {
	for (k = 1; k <= NK[e]; k++) if (KEY[e, k] == key) { FOUND = 1; return VAL[e, k] }
	FOUND = 0
	return ""
}

function all(e, key,   k, out, sep) {
	out = ""; sep = ""
	for (k = 1; k <= NK[e]; k++) if (KEY[e, k] == key) { out = out sep VAL[e, k]; sep = " " }
	return out
}

function vercmp(a, b,   i, j, la, lb, ca, cb, ea, eb, num, sa, sb) {
	if (a == b) return 0
	i = 1; j = 1; la = length(a); lb = length(b)
	while (i <= la || j <= lb) {
		while (i <= la && !isalnum(substr(a, i, 1)) && substr(a, i, 1) != "~" && substr(a, i, 1) != "+") i++
		while (j <= lb && !isalnum(substr(b, j, 1)) && substr(b, j, 1) != "~" && substr(b, j, 1) != "+") j++
		ca = i <= la ? substr(a, i, 1) : ""
		cb = j <= lb ? substr(b, j, 1) : ""
		if (ca == "~" || cb == "~") {
			if (ca != "~") return 1
			if (cb != "~") return -1
			i++; j++
			continue
		}
		if (ca == "+" || cb == "+") {
			if (ca == "") return -1
			if (cb == "") return 1
			if (ca != "+") return 1
			if (cb != "+") return -1
			i++; j++
			continue
		}
		if (ca == "" || cb == "") break
		num = isdigit(ca)
		ea = i; eb = j
		if (num) {
			while (ea <= la && isdigit(substr(a, ea, 1))) ea++
			while (eb <= lb && isdigit(substr(b, eb, 1))) eb++
		} else {
			while (ea <= la && isalpha(substr(a, ea, 1))) ea++
			while (eb <= lb && isalpha(substr(b, eb, 1))) eb++
		}
		if (eb == j) return num ? 1 : -1
		sa = substr(a, i, ea - i) ""
		sb = substr(b, j, eb - j) ""
		if (num) {
			sub(/^0+/, "", sa)
			sub(/^0+/, "", sb)
			if (length(sa) > length(sb)) return 1
			if (length(sa) < length(sb)) return -1
		}
		if (sa "" < sb "") return -1
		if (sa "" > sb "") return 1
		i = ea; j = eb
	}
	if (i > la && j > lb) return 0
	if (i > la) return -1
	return 1
}

function split_nvr(s,   i, rest) {
	i = last_dash(s)
	if (!i) { NVR_N = s; NVR_V = ""; NVR_R = ""; return }
	rest = substr(s, 1, i - 1)
	NVR_R = substr(s, i + 1)
	i = last_dash(rest)
	if (!i) { NVR_N = rest; NVR_V = NVR_R; NVR_R = ""; return }
	NVR_N = substr(rest, 1, i - 1)
	NVR_V = substr(rest, i + 1)
}

function last_dash(s,   i) {
	for (i = length(s); i > 0; i--) if (substr(s, i, 1) == "-") return i
	return 0
}

function bls_cmp(a, b,   an, av, ar, r) {
	split_nvr(a); an = NVR_N; av = NVR_V; ar = NVR_R
	split_nvr(b)
	if ((r = vercmp(an, NVR_N)) != 0) return r
	if ((r = vercmp(av, NVR_V)) != 0) return r
	return vercmp(ar, NVR_R)
}

# blscfg's expand_val; sets XSET when anything was added.
function expand_val(v,   n, i, c, start, end, isvar) {
	XBUF = ""; XSET = 0
	start = 1; end = 1; isvar = 0
	n = length(v)
	for (i = 1; i <= n; i++) {
		c = substr(v, i, 1)
		if (c == "$") {
			if (start != end) append_field(isvar, v, start, end)
			isvar = 1
			start = i + 1
		} else if (isvar && !isalnum(c) && c != "_") {
			append_field(isvar, v, start, end)
			isvar = 0
			start = i
			if (c == " ") start++
		}
		end = i
	}
	if (start != end) append_field(isvar, v, start, end)
	return XBUF
}

function append_field(isvar, v, start, end,   f) {
	f = end < start ? "" : substr(v, start, end - start + 1)
	if (isvar) {
		if (!(f in ENV)) return
		XBUF = XBUF ENV[f] " "
	} else {
		XBUF = XBUF f
	}
	XSET = 1
}

# words(s): $name and ${name} expanded, split at blanks into WORD[1..n].
function words(s,   n, i, k) {
	s = expand_string(s)
	n = split(s, W, /[ \t\n]+/)
	k = 0
	for (i = 1; i <= n; i++) if (W[i] != "") WORD[++k] = W[i]
	return k
}

function grub_number(s,   base, digits, n, i, c, d) {
	base = 10; digits = s
	if (length(s) > 2 && (substr(s, 1, 2) == "0x" || substr(s, 1, 2) == "0X")) { base = 16; digits = substr(s, 3) }
	else if (length(s) > 1 && substr(s, 1, 1) == "0") { base = 8; digits = substr(s, 2) }
	if (digits == "") return -1
	n = 0
	for (i = 1; i <= length(digits); i++) {
		c = substr(digits, i, 1)
		d = index("0123456789abcdef", c)
		if (!d) d = index("0123456789ABCDEF", c)
		if (!d) return -1
		d--
		if (d >= base) return -1
		if (n > 4294967296) continue
		n = n * base + d
	}
	return n
}

function grub2_title(t) {
	if (index(t, "' ") || index(t, "\" ")) { gsub(/'/, "", t); gsub(/"/, "", t) }
	return t
}
`

const blsAwkMain = `BEGIN {
	env_text = readfile(ARGV[1])
	if (env_nl == 0) env_text = substr(env_text, 1, length(env_text) - 1)
	HAVE_GRUBENV = parse_grubenv(env_text)
	run_cfg(readfile(ARGV[2]))
	NE = 0
	for (a = 3; a < ARGC; a++) {
		f = ARGV[a]
		name = f
		sub(/.*\//, "", name)
		if (substr(name, 1, 1) == "." || length(name) <= 5 || substr(name, length(name) - 4) != ".conf") continue
		id = substr(name, 1, length(name) - 5)
		if (exclude != "" && (length(id) > length(exclude) && substr(id, length(id) - length(exclude)) == "-" exclude || length(id) > length(exclude) + 6 && substr(id, length(id) - length(exclude) - 6) == "-" exclude "~debug")) continue
		read_entry(f, id)
	}
	# bls_add_entry: each entry goes before the first one it is newer
	# than; one equal to an entry already there is dropped.
	nl = 0
	for (e = 1; e <= NE; e++) {
		placed = 0
		for (i = 1; i <= nl; i++) {
			r = bls_cmp(EID[e], EID[L[i]])
			if (r == 0) { placed = 1; break }
			if (r == 1) {
				for (j = nl; j >= i; j--) L[j + 1] = L[j]
				L[i] = e
				nl++
				placed = 1
				break
			}
		}
		if (!placed) L[++nl] = e
	}
	nb = 0
	for (i = 1; i <= nl; i++) {
		e = L[i]
		linux = first(e, "linux"); has_linux = FOUND
		first(e, "efi")
		if (!has_linux || FOUND) continue
		title = first(e, "title")
		if (!FOUND) title = linux
		options = ""; has_options = 0
		raw = first(e, "options")
		if (FOUND) { options = expand_val(raw); has_options = XSET }
		if (!has_options && ("default_kernelopts" in ENV)) options = expand_val(ENV["default_kernelopts"])
		n = words(linux " " options)
		if (n == 0) continue
		nb++
		BID[nb] = EID[e]
		BTITLE[nb] = title
		BKERNEL[nb] = WORD[1]
		args = ""
		for (k = 2; k <= n; k++) args = args (k > 2 ? " " : "") WORD[k]
		BARGS[nb] = args
		n = words(all(e, "initrd"))
		BNINITRD[nb] = n
		BINITRD[nb] = n >= 1 ? WORD[1] : ""
		initrds = ""
		for (k = 1; k <= n; k++) initrds = initrds (k > 1 ? " " : "") WORD[k]
		BINITRDS[nb] = initrds
	}
	if (nb == 0) { print "opsctl-pygrub-menulst.install: no entry with a kernel in " dir > "/dev/stderr"; exit 1 }
	def = 1
	if ("default" in ENV) {
		d = ENV["default"]
		num = grub_number(d)
		if (num >= 0) {
			if (num < nb) def = num + 1
		} else {
			for (i = 1; i <= nb; i++) if (BTITLE[i] == d || BID[i] == d) { def = i; break }
		}
	}
	ne = 0
	for (i = 1; i <= nb; i++) {
		if (BNINITRD[i] > 1) {
			if (i == def) { print "opsctl-pygrub-menulst.install: " dir "/" BID[i] ".conf, the entry grub boots, has " BNINITRD[i] " initrd files (" BINITRDS[i] "): pygrub loads one" > "/dev/stderr"; exit 1 }
			continue
		}
		ne++
		if (i == def) mdef = ne - 1
		OT[ne] = trim(BTITLE[i]); OK[ne] = BKERNEL[i]; OA[ne] = BARGS[i]; OI[ne] = BINITRD[i]
	}
	source = "# from " cfg " (blscfg: " dir "/*.conf).\n# Rewritten at kernel updates by the kernel-install plugin (opsctl pygrub menulst --install-hook).\n"
	printf "%s\n%sset default=%d\nset timeout=5\n", grub2_marker, source, mdef > grub2_out
	for (i = 1; i <= ne; i++) {
		t = grub2_title(OT[i])
		q = index(t, "'") ? "\"" : "'"
		printf "menuentry %s%s%s {\n\tlinux %s%s\n", q, t, q, OK[i], (OA[i] != "" ? " " OA[i] : "") > grub2_out
		if (OI[i] != "") printf "\tinitrd %s\n", OI[i] > grub2_out
		printf "}\n" > grub2_out
	}
	printf "%s\n%sdefault=%d\ntimeout=5\n", menu_marker, source, mdef > menu_out
	for (i = 1; i <= ne; i++) {
		printf "title %s\n\tkernel %s%s\n", OT[i], OK[i], (OA[i] != "" ? " " OA[i] : "") > menu_out
		if (OI[i] != "") printf "\tinitrd %s\n", OI[i] > menu_out
	}
	close(grub2_out)
	close(menu_out)
	exit 0
}
`
