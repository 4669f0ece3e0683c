package pygrubfix

// pygrub is Python; its parsers lean on str.strip, str.split, int() and
// slicing by code point. These helpers give Go the same semantics so that the
// emulation agrees with pygrub on odd input too (tabs, Unicode spaces,
// "1_0", "+3"), not only on tidy configs.

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"
)

// pyIsSpace is Python's str.isspace for one character: Go's unicode.IsSpace
// plus the four ASCII separators U+001C..U+001F that Python counts as space.
func pyIsSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// pyStrip is str.strip().
func pyStrip(s string) string { return strings.TrimFunc(s, pyIsSpace) }

// pySplitSpace is str.split(None, maxsplit); maxsplit < 0 means no limit.
// The remainder after maxsplit splits keeps its trailing space, as in Python.
func pySplitSpace(s string, maxsplit int) []string {
	var out []string
	i := 0
	next := func(i int) (rune, int) { return utf8.DecodeRuneInString(s[i:]) }
	for maxsplit < 0 || len(out) < maxsplit {
		for i < len(s) {
			r, n := next(i)
			if !pyIsSpace(r) {
				break
			}
			i += n
		}
		if i == len(s) {
			return out
		}
		j := i
		for i < len(s) {
			r, n := next(i)
			if pyIsSpace(r) {
				break
			}
			i += n
		}
		out = append(out, s[j:i])
	}
	for i < len(s) {
		r, n := next(i)
		if !pyIsSpace(r) {
			break
		}
		i += n
	}
	if i < len(s) {
		out = append(out, s[i:])
	}
	return out
}

// pySplitSep is str.split(sep, maxsplit).
func pySplitSep(s, sep string, maxsplit int) []string {
	if maxsplit < 0 {
		return strings.Split(s, sep)
	}
	return strings.SplitN(s, sep, maxsplit+1)
}

// pySlice is s[from:] by code point.
func pySlice(s string, from int) string {
	for i := range s {
		if from == 0 {
			return s[i:]
		}
		from--
	}
	return ""
}

// pyLower is enough of str.lower() for matching ASCII keywords: no
// non-ASCII character lowers to an ASCII letter used in pygrub's keywords.
func pyLower(s string) string { return strings.ToLower(s) }

// errPyInt is int()'s ValueError.
type errPyInt struct{ literal string }

func (e errPyInt) Error() string {
	return fmt.Sprintf("invalid literal for int() with base 10: %s", pyRepr(e.literal))
}

// pyMaxStrDigits is Python's default limit on the digits int() converts
// (sys.int_info.default_max_str_digits); longer numbers are a ValueError.
const pyMaxStrDigits = 4300

// pyInteger is the result of int(): its sign and, when it fits, its value.
type pyInteger struct {
	sign  int   // -1, 0 or 1
	value int64 // the magnitude, math.MaxInt64 when it does not fit
}

// pyInt is int(s) for a str in base 10: surrounding white space, one sign,
// decimal digits of any script, single underscores between digits, and at
// most 4300 digits.
func pyInt(s string) (pyInteger, error) {
	t := pyStrip(s)
	neg := false
	if strings.HasPrefix(t, "+") || strings.HasPrefix(t, "-") {
		neg = t[0] == '-'
		t = t[1:]
	}
	if t == "" {
		return pyInteger{}, errPyInt{s}
	}
	var n pyInteger
	digits := 0
	prevUnderscore := true // a leading underscore is invalid
	for _, r := range t {
		if r == '_' {
			if prevUnderscore {
				return pyInteger{}, errPyInt{s}
			}
			prevUnderscore = true
			continue
		}
		d, ok := decimalValue(r)
		if !ok {
			return pyInteger{}, errPyInt{s}
		}
		digits++
		prevUnderscore = false
		if n.value > (math.MaxInt64-int64(d))/10 {
			n.value = math.MaxInt64
		} else {
			n.value = n.value*10 + int64(d)
		}
	}
	if prevUnderscore {
		return pyInteger{}, errPyInt{s}
	}
	if digits > pyMaxStrDigits {
		return pyInteger{}, fmt.Errorf("Exceeds the limit (%d digits) for integer string conversion: value has %d digits; use sys.set_int_max_str_digits() to increase the limit", pyMaxStrDigits, digits)
	}
	switch {
	case n.value == 0:
		n.sign = 0
	case neg:
		n.sign = -1
	default:
		n.sign = 1
	}
	return n, nil
}

// decimalValue is the value of a Unicode decimal digit (category Nd). Every
// Nd block is a run of ten digits starting at zero.
func decimalValue(r rune) (int, bool) {
	if r >= '0' && r <= '9' {
		return int(r - '0'), true
	}
	if !unicode.Is(unicode.Nd, r) || unicode15Digit(r) {
		return 0, false
	}
	start := r
	for unicode.Is(unicode.Nd, start-1) {
		start--
	}
	return int(r-start) % 10, true
}

// unicode15Digit is a digit added in Unicode 15 (Kawi, Nag Mundari): Go
// knows them, the Python 3.11 of pygrub (Unicode 14) does not.
func unicode15Digit(r rune) bool {
	return (r >= 0x11F50 && r <= 0x11F59) || (r >= 0x1E4F0 && r <= 0x1E4F9)
}

// pyRepr quotes s the way Python's repr() of a str usually does, for
// messages that mirror pygrub's own.
func pyRepr(s string) string {
	q := "'"
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		q = `"`
	}
	var b strings.Builder
	b.WriteString(q)
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case string(r) == q:
			b.WriteString(`\` + q)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteString(q)
	return b.String()
}

// errNotUTF8 is the UnicodeDecodeError pygrub 4.17 (Python 3) raises on a
// config that is not valid UTF-8.
var errNotUTF8 = errors.New("'utf-8' codec can't decode the config: not valid UTF-8")
