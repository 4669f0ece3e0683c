package pygrubfix

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
)

// Boot Loader Spec entries as grub's blscfg module (EL8, EL9, Fedora)
// reads them. EL8/EL9 grub.cfg holds no menuentry: it runs `blscfg`, which
// reads /loader/entries/*.conf on the boot file system (falling back to
// /boot/loader/entries), sorts them newest first and makes one menu entry
// of each. pygrub knows nothing of this ("Unknown directive blscfg"), so
// opsctl reads the entries itself and writes what pygrub can read.
//
// The rules below follow blscfg.c of the grub2 package of EL8/EL9 and
// Fedora, quirks included, because the point is to boot what grub would.

// BLSEntry is one entry file: its id (the file name without .conf) and
// its key/value lines in file order.
type BLSEntry struct {
	ID   string
	Keys []BLSKey
}

// BLSKey is one "key value" line of an entry.
type BLSKey struct{ Key, Value string }

// first is the first value of key, as bls_get_val returns it.
func (e *BLSEntry) first(key string) (string, bool) {
	for _, kv := range e.Keys {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

// all is every value of key in file order (bls_make_list).
func (e *BLSEntry) all(key string) []string {
	var out []string
	for _, kv := range e.Keys {
		if kv.Key == key {
			out = append(out, kv.Value)
		}
	}
	return out
}

// blsEntryName is whether blscfg reads a file of that name in the entries
// folder, and the id it gets: not hidden, longer than ".conf", ending in
// ".conf".
func blsEntryName(name string) (string, bool) {
	if strings.HasPrefix(name, ".") || len(name) <= 5 || !strings.HasSuffix(name, ".conf") {
		return "", false
	}
	return strings.TrimSuffix(name, ".conf"), true
}

// ParseBLSEntry reads one entry file named name the way blscfg's
// read_entry does. It reports false for a file name blscfg skips. Lines
// end at "\n", carriage returns are dropped everywhere and a NUL ends a
// line (grub works on C strings); leading blanks are skipped and a line
// starting with # is a comment. The key ends at the first space (at the
// first tab only when the line has no space) and the value starts after
// the blanks that follow. A line without a separator, or with nothing
// after it (an empty line included), ends the entry: what follows is not
// read.
func ParseBLSEntry(name string, data []byte) (*BLSEntry, bool) {
	id, ok := blsEntryName(name)
	if !ok {
		return nil, false
	}
	e := &BLSEntry{ID: id}
	data = bytes.ReplaceAll(data, []byte("\r"), nil)
	for len(data) > 0 {
		line := data
		if nl := bytes.IndexByte(data, '\n'); nl >= 0 {
			line, data = data[:nl], data[nl+1:]
		} else {
			data = nil
		}
		if nul := bytes.IndexByte(line, 0); nul >= 0 {
			line = line[:nul]
		}
		line = bytes.TrimLeft(line, " \t")
		if len(line) > 0 && line[0] == '#' {
			continue
		}
		sep := bytes.IndexByte(line, ' ')
		if sep < 0 {
			sep = bytes.IndexByte(line, '\t')
		}
		if sep < 0 || sep+1 == len(line) {
			break
		}
		e.Keys = append(e.Keys, BLSKey{Key: string(line[:sep]), Value: string(bytes.TrimLeft(line[sep+1:], " \t"))})
	}
	return e, true
}

// sortBLS orders entries as blscfg's bls_add_entry does, taking them in
// the order given (the folder's, sorted by name here): each goes before
// the first one it is newer than, and one that compares equal to an entry
// already there is dropped.
func sortBLS(entries []*BLSEntry) []*BLSEntry {
	var list []*BLSEntry
next:
	for _, e := range entries {
		for i, have := range list {
			switch blsCompare(e.ID, have.ID) {
			case 0:
				continue next
			case 1:
				list = append(list[:i], append([]*BLSEntry{e}, list[i:]...)...)
				continue next
			}
		}
		list = append(list, e)
	}
	return list
}

// blsCompare is blscfg's bls_cmp: the ids split as rpm's
// name-version-release at the last two dashes, each part compared with
// rpm's version comparison; 1 when a is newer.
func blsCompare(a, b string) int {
	an, av, ar := splitNVR(a)
	bn, bv, br := splitNVR(b)
	if r := rpmVercmp(an, bn); r != 0 {
		return r
	}
	if r := rpmVercmp(av, bv); r != 0 {
		return r
	}
	return rpmVercmp(ar, br)
}

// splitNVR is split_package_string with a name: release after the last
// dash, version after the one before, the name before that. With one dash
// there is no release, with none only a name.
func splitNVR(s string) (name, version, release string) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return s, "", ""
	}
	rest, rel := s[:i], s[i+1:]
	j := strings.LastIndexByte(rest, '-')
	if j < 0 {
		return rest, rel, ""
	}
	return rest[:j], rest[j+1:], rel
}

func isASCIIDigit(c byte) bool { return c >= '0' && c <= '9' }
func isASCIIAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isASCIIAlnum(c byte) bool { return isASCIIDigit(c) || isASCIIAlpha(c) }

// rpmVercmp is the version comparison of blscfg (rpm's, with ~ sorting
// before anything and + after the end): 1 when a is newer, -1 when b is,
// 0 when equal.
func rpmVercmp(a, b string) int {
	if a == b {
		return 0
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for i < len(a) && !isASCIIAlnum(a[i]) && a[i] != '~' && a[i] != '+' {
			i++
		}
		for j < len(b) && !isASCIIAlnum(b[j]) && b[j] != '~' && b[j] != '+' {
			j++
		}
		at := func(s string, k int) byte {
			if k < len(s) {
				return s[k]
			}
			return 0
		}
		ca, cb := at(a, i), at(b, j)
		if ca == '~' || cb == '~' {
			if ca != '~' {
				return 1
			}
			if cb != '~' {
				return -1
			}
			i, j = i+1, j+1
			continue
		}
		if ca == '+' || cb == '+' {
			if ca == 0 {
				return -1
			}
			if cb == 0 {
				return 1
			}
			if ca != '+' {
				return 1
			}
			if cb != '+' {
				return -1
			}
			i, j = i+1, j+1
			continue
		}
		if ca == 0 || cb == 0 {
			break
		}
		endA, endB := i, j
		isNum := isASCIIDigit(ca)
		class := isASCIIAlpha
		if isNum {
			class = isASCIIDigit
		}
		for endA < len(a) && class(a[endA]) {
			endA++
		}
		for endB < len(b) && class(b[endB]) {
			endB++
		}
		if endB == j {
			// The segments are of different kinds: a number is newer.
			if isNum {
				return 1
			}
			return -1
		}
		segA, segB := a[i:endA], b[j:endB]
		if isNum {
			segA, segB = strings.TrimLeft(segA, "0"), strings.TrimLeft(segB, "0")
			if len(segA) != len(segB) {
				if len(segA) > len(segB) {
					return 1
				}
				return -1
			}
		}
		if c := strings.Compare(segA, segB); c != 0 {
			return c
		}
		i, j = endA, endB
	}
	switch {
	case i >= len(a) && j >= len(b):
		return 0
	case i >= len(a):
		return -1
	}
	return 1
}

// expandBLSValue is blscfg's expand_val, applied to the options line:
// $name is replaced by the variable's value followed by a space (nothing
// when unset) and the space after a variable name is dropped. It keeps
// expand_val's quirks: a last field of one character is dropped, and
// ok is false when nothing was added (options then fall back to
// $default_kernelopts).
//
// The result is cut at maxExpansion+1 bytes: longer means too long (see
// maxExpansion).
func expandBLSValue(value string, env map[string]string) (string, bool) {
	var buf strings.Builder
	set := false
	appendField := func(isVar bool, field string) {
		if buf.Len() > maxExpansion {
			set = true
			return
		}
		if isVar {
			v, ok := env[field]
			if !ok {
				return
			}
			buf.WriteString(v)
			buf.WriteByte(' ')
		} else {
			buf.WriteString(field)
		}
		set = true
	}
	start, end := 0, 0
	isVar := false
	field := func(from, to int) string {
		if to < from {
			return ""
		}
		return value[from : to+1]
	}
	for i := 0; i < len(value); i++ {
		c := value[i]
		if c == '$' {
			if start != end {
				appendField(isVar, field(start, end))
			}
			isVar, start = true, i+1
		} else if isVar && !isASCIIAlnum(c) && c != '_' {
			appendField(isVar, field(start, end))
			isVar, start = false, i
			if c == ' ' {
				start++
			}
		}
		end = i
	}
	if start != end {
		appendField(isVar, field(start, end))
	}
	return capExpansion(buf.String()), set
}

// maxExpansion bounds a value opsctl expands from a guest's grub.cfg,
// grubenv and entries: a kernel command line is at most a few KiB. grub
// itself has no bound, and a guest's 41 lines of grub.cfg (set x="$x$x",
// 40 times) made a value of terabytes, on the host, as root.
const maxExpansion = 64 << 10

// maxEnvBytes bounds all the variables of a grub.cfg together.
const maxEnvBytes = 1 << 20

// capExpansion cuts s at maxExpansion+1 bytes: longer is too long.
func capExpansion(s string) string {
	if len(s) > maxExpansion+1 {
		return s[:maxExpansion+1]
	}
	return s
}

// expansionError is a value that grows beyond maxExpansion, or variables
// beyond maxEnvBytes: what says which ("the variable x grows").
type expansionError struct {
	what  string
	limit int
}

func (e *expansionError) Error() string {
	return fmt.Sprintf("%s beyond %d KiB (a kernel command line is a few KiB)", e.what, e.limit>>10)
}

// expandScriptWords is what grub's script engine does with the linux and
// initrd lines blscfg generates, as far as opsctl models it: $name and
// ${name} are replaced by the variable's value ("" when unset), then the
// line is split into words at blanks. Quotes are kept as written (the
// kernel reads foo="a b" as grub would pass it).
func expandScriptWords(s string, env map[string]string) []string {
	return splitWords(expandScriptString(s, env))
}

// splitWords splits s at blanks, as grub's script engine splits a line.
func splitWords(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' })
}

// BLSBoot is one menu entry that blscfg makes of an entry file: what grub
// boots when it is chosen.
type BLSBoot struct {
	ID    string
	Title string
	// Kernel and Initrds are paths on the boot file system; Args the
	// kernel command line.
	Kernel  string
	Initrds []string
	Args    string
}

// blsBoots makes the menu of sorted entries with the variables env: one
// menu entry for each entry with a linux key and no efi key (entries
// without one are no menu entries for grub, nor for pygrub).
func blsBoots(sorted []*BLSEntry, env map[string]string) (boots []BLSBoot, skipped []string, err error) {
	for _, e := range sorted {
		linux, hasLinux := e.first("linux")
		if _, efi := e.first("efi"); !hasLinux || efi {
			skipped = append(skipped, e.ID)
			continue
		}
		title, ok := e.first("title")
		if !ok {
			title = linux
		}
		options, hasOptions := "", false
		if raw, ok := e.first("options"); ok {
			options, hasOptions = expandBLSValue(raw, env)
		}
		if !hasOptions {
			if def, ok := env["default_kernelopts"]; ok {
				options, _ = expandBLSValue(def, env)
			}
		}
		line := expandScriptString(capExpansion(linux+" "+options), env)
		initrds := expandScriptString(strings.Join(e.all("initrd"), " "), env)
		if len(line) > maxExpansion || len(initrds) > maxExpansion {
			return nil, nil, &expansionError{what: "the kernel line of entry " + e.ID + " grows", limit: maxExpansion}
		}
		words := splitWords(line)
		if len(words) == 0 {
			skipped = append(skipped, e.ID)
			continue
		}
		boots = append(boots, BLSBoot{
			ID:      e.ID,
			Title:   title,
			Kernel:  words[0],
			Initrds: splitWords(initrds),
			Args:    strings.Join(words[1:], " "),
		})
	}
	return boots, skipped, nil
}

// grubDefaultIndex is the menu entry grub boots for the value of its
// default variable (set from saved_entry on EL8/EL9): a number (decimal,
// 0x hexadecimal or 0 octal, as grub_strtoul reads it, and nothing after
// it) is an index; anything else the first entry whose title or id it is.
// Unset, unknown or out of range: the first entry.
func grubDefaultIndex(boots []BLSBoot, def string, isSet bool) int {
	if !isSet || len(boots) == 0 {
		return 0
	}
	if n, ok := grubNumber(def); ok {
		if n < uint64(len(boots)) {
			return int(n)
		}
		return 0
	}
	for i, b := range boots {
		if b.Title == def || b.ID == def {
			return i
		}
	}
	return 0
}

// grubNumber reads s as a whole number the way grub_strtoul with base 0
// does; ok is false when s is not one (a title or an id).
func grubNumber(s string) (uint64, bool) {
	base, digits := uint64(10), s
	switch {
	case len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X"):
		base, digits = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, digits = 8, s[1:]
	}
	if digits == "" {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		var d uint64
		switch {
		case isASCIIDigit(c):
			d = uint64(c - '0')
		case c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		if d >= base {
			return 0, false
		}
		if n > 1<<32 {
			continue // far past any menu; grub's own overflow changes nothing here
		}
		n = n*base + d
	}
	return n, true
}

// grubenvSignature starts every grubenv block.
const grubenvSignature = "# GRUB Environment Block\n"

// ParseGrubenv reads a grubenv block the way grub's load_env does. A
// block without the signature is no grubenv: grub loads nothing from it
// (ok false). Lines starting with # are skipped; a name runs to the first
// "=", the value to the end of the line, where a backslash takes the next
// byte as it is (\\ and an escaped newline). A last line without its
// newline is broken and ends the block.
func ParseGrubenv(data []byte) (vars map[string]string, ok bool) {
	if !bytes.HasPrefix(data, []byte(grubenvSignature)) {
		return nil, false
	}
	vars = map[string]string{}
	p := len(grubenvSignature)
	for p < len(data) {
		if data[p] == '#' {
			nl := bytes.IndexByte(data[p:], '\n')
			if nl < 0 {
				break
			}
			p += nl + 1
			continue
		}
		eq := bytes.IndexByte(data[p:], '=')
		if eq < 0 {
			break
		}
		name := string(data[p : p+eq])
		q := p + eq + 1
		var value []byte
		for q < len(data) && data[q] != '\n' {
			if data[q] == '\\' {
				q++
				if q >= len(data) {
					break
				}
			}
			value = append(value, data[q])
			q++
		}
		if q >= len(data) {
			break
		}
		vars[name] = string(value)
		p = q + 1
	}
	return vars, true
}

// grubCfgEnv is the value of grub's variables once the top level of
// grub.cfg has run, as far as opsctl models grub's script: `set NAME=VALUE`
// and `NAME=VALUE` (double-quoted values and bare ones with $name and
// ${name} expanded, single-quoted ones as written), `load_env` (grubenv's
// variables, when there is a grubenv), and if/elif/else/fi whose test is
// one of those grub-mkconfig writes: [ -z "$X" ], [ -n "$X" ], [ "$X" ]
// and [ -f/-s .../grubenv ]. Any other test is taken as false (EL9's
// boot counting, feature checks). Menu entries, submenus and functions are
// not run.
//
// A value that grows beyond maxExpansion, or variables beyond maxEnvBytes
// in all, is an *expansionError.
func grubCfgEnv(cfg []byte, grubenv map[string]string, haveGrubenv bool) (map[string]string, error) {
	env := map[string]string{}
	size := 0 // of the values in env
	assign := func(s string) error {
		name, old := grubAssign(s, env)
		value := env[name]
		if len(value) > maxExpansion {
			return &expansionError{what: "the variable " + name + " grows", limit: maxExpansion}
		}
		if size += len(value) - len(old); size > maxEnvBytes {
			return &expansionError{what: "the variables together grow", limit: maxEnvBytes}
		}
		return nil
	}
	type frame struct{ active, taken bool }
	var stack []frame
	active := func() bool {
		return len(stack) == 0 || stack[len(stack)-1].active
	}
	parentActive := func() bool {
		return len(stack) < 2 || stack[len(stack)-2].active
	}
	depth := 0
	for _, raw := range strings.Split(string(cfg), "\n") {
		line := strings.Trim(raw, " \t\r")
		if line == "" || line[0] == '#' {
			continue
		}
		word, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimLeft(rest, " \t")
		if depth > 0 {
			switch {
			case strings.HasPrefix(line, "}"):
				depth--
			case strings.HasSuffix(line, "{"):
				depth++
			}
			continue
		}
		switch word {
		case "menuentry", "submenu", "function":
			if strings.HasSuffix(line, "{") {
				depth++
			}
			continue
		case "if":
			c := grubTest(rest, env, haveGrubenv)
			stack = append(stack, frame{active: active() && c, taken: c})
			continue
		case "elif":
			if len(stack) > 0 {
				f := &stack[len(stack)-1]
				c := !f.taken && grubTest(rest, env, haveGrubenv)
				f.active, f.taken = parentActive() && c, f.taken || c
			}
			continue
		case "else":
			if len(stack) > 0 {
				f := &stack[len(stack)-1]
				f.active, f.taken = parentActive() && !f.taken, true
			}
			continue
		case "fi":
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		if !active() {
			continue
		}
		var err error
		switch {
		case word == "load_env":
			if haveGrubenv {
				for k, v := range grubenv {
					size += len(v) - len(env[k])
					env[k] = v
				}
			}
		case word == "set":
			err = assign(rest)
		case grubAssignment(line):
			err = assign(line)
		}
		if err != nil {
			return nil, err
		}
	}
	return env, nil
}

// grubAssignment is whether line is NAME=VALUE.
func grubAssignment(line string) bool {
	eq := strings.IndexByte(line, '=')
	if eq <= 0 {
		return false
	}
	for i := 0; i < eq; i++ {
		c := line[i]
		if !(c == '_' || isASCIIAlpha(c) || i > 0 && isASCIIDigit(c)) {
			return false
		}
	}
	return true
}

// grubAssign runs `NAME=VALUE` and returns NAME and its value before.
func grubAssign(s string, env map[string]string) (name, old string) {
	name, value, ok := strings.Cut(s, "=")
	if !ok || !grubAssignment(s) {
		return "", ""
	}
	old = env[name]
	value = strings.TrimRight(value, " \t")
	switch {
	case len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"':
		value = expandScriptString(value[1:len(value)-1], env)
	case len(value) >= 2 && value[0] == '\'' && value[len(value)-1] == '\'':
		value = value[1 : len(value)-1]
	default:
		if i := strings.IndexAny(value, " \t"); i >= 0 {
			value = value[:i]
		}
		value = expandScriptString(value, env)
	}
	env[name] = value
	return name, old
}

// expandScriptString replaces $name and ${name} in s, without splitting.
// The result is cut at maxExpansion+1 bytes: longer means too long.
func expandScriptString(s string, env map[string]string) string {
	if !strings.Contains(s, "$") {
		return capExpansion(s)
	}
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() <= maxExpansion; i++ {
		if s[i] != '$' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '{' {
			if end := strings.IndexByte(s[i+2:], '}'); end >= 0 {
				b.WriteString(env[s[i+2:i+2+end]])
				i += 2 + end
				continue
			}
		}
		j := i + 1
		for j < len(s) && (isASCIIAlnum(s[j]) || s[j] == '_') {
			j++
		}
		if j == i+1 {
			b.WriteByte('$')
			continue
		}
		b.WriteString(env[s[i+1:j]])
		i = j - 1
	}
	return capExpansion(b.String())
}

// grubTest evaluates the test of an if line ("[ -z "${kernelopts}" ]; then").
func grubTest(s string, env map[string]string, haveGrubenv bool) bool {
	s = strings.Trim(s, " \t")
	for _, suffix := range []string{"; then", ";then", " then"} {
		if t, ok := strings.CutSuffix(s, suffix); ok {
			s = t
			break
		}
	}
	s = strings.Trim(s, " \t")
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' })
	if len(f) < 3 || f[0] != "[" || f[len(f)-1] != "]" {
		return false
	}
	f = f[1 : len(f)-1]
	varName := func(w string) (string, bool) {
		w = strings.Trim(w, `"`)
		if n, ok := strings.CutPrefix(w, "${"); ok {
			n, ok = strings.CutSuffix(n, "}")
			return n, ok && n != ""
		}
		n, ok := strings.CutPrefix(w, "$")
		return n, ok && n != "" && !strings.ContainsAny(n, "/{}")
	}
	switch {
	case len(f) == 2 && f[0] == "-z":
		if n, ok := varName(f[1]); ok {
			return env[n] == ""
		}
	case len(f) == 2 && f[0] == "-n":
		if n, ok := varName(f[1]); ok {
			return env[n] != ""
		}
	case len(f) == 1:
		if n, ok := varName(f[0]); ok {
			return env[n] != ""
		}
	case len(f) == 2 && (f[0] == "-f" || f[0] == "-s") && strings.HasSuffix(f[1], "/grubenv"):
		return haveGrubenv
	}
	return false
}

// usesBLS is whether a grub config runs blscfg at its top level.
func usesBLS(cfg []byte) bool {
	for _, raw := range strings.Split(string(cfg), "\n") {
		word, _, _ := strings.Cut(strings.Trim(raw, " \t\r"), " ")
		if word == "blscfg" || word == "bls_import" {
			return true
		}
	}
	return false
}

// blsIDs lists ids for messages: at most a few, then how many more.
func blsIDs(ids []string) string {
	const most = 4
	if len(ids) <= most {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:most], ", "), len(ids)-most)
}

// sortedNames sorts file names as the plugin's shell glob does (bytes).
func sortedNames(names []string) []string {
	sort.Strings(names)
	return names
}
