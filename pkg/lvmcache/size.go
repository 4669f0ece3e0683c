package lvmcache

import (
	"fmt"
	"math/big"
	"strings"
)

// Size is a SIZE argument of resize: a number of bytes, either the new size
// or, with a leading "+", how much to add.
type Size struct {
	Bytes    int64
	Relative bool
}

// String renders the size the way it was meant: "+1073741824b" or "1073741824b".
func (s Size) String() string {
	if s.Relative {
		return fmt.Sprintf("+%db", s.Bytes)
	}
	return fmt.Sprintf("%db", s.Bytes)
}

const sizeExpected = "expected a number with an optional unit b, k, m, g, t or p (powers of 1024; no unit means MiB), like 100G"

// sectorSize is the unit lvm2 counts sizes in.
const sectorSize = 512

var unitShift = map[byte]uint{'b': 0, 'k': 10, 'm': 20, 'g': 30, 't': 40, 'p': 50}

// ParseSize parses an absolute SIZE: a number, possibly with a fraction, and
// an optional unit b, k, m, g, t or p, case-insensitive, in powers of 1024
// as lvm2 reads them; no unit means MiB. lvm2 counts in 512-byte sectors, so
// a fraction ("0.3T", "1.3g") is rounded up to whole sectors. The result must
// be positive and fit in an int64.
func ParseSize(s string) (int64, error) {
	if strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("size %q: a relative size (+SIZE) is only for resize; %s", s, sizeExpected)
	}
	return parseBytes(s)
}

// ParseResizeSize parses the SIZE of resize: an absolute SIZE, or "+SIZE"
// to grow by that much. Shrinking ("-SIZE") is refused: it would cut off the
// data at the end of the LV.
func ParseResizeSize(s string) (Size, error) {
	if strings.HasPrefix(s, "-") {
		return Size{}, fmt.Errorf("size %q: shrinking is not supported (it would destroy the data at the end of the LV); expected SIZE or +SIZE", s)
	}
	relative := strings.HasPrefix(s, "+")
	n, err := parseBytesOf(strings.TrimPrefix(s, "+"), s)
	if err != nil {
		return Size{}, err
	}
	return Size{Bytes: n, Relative: relative}, nil
}

func parseBytes(s string) (int64, error) { return parseBytesOf(s, s) }

// parseBytesOf parses number, the SIZE input without its "+"; errors name
// the input as given.
func parseBytesOf(number, input string) (int64, error) {
	s := input
	if number != strings.TrimSpace(number) || number == "" {
		return 0, fmt.Errorf("size %q: %s", s, sizeExpected)
	}
	shift := uint(20)
	last := number[len(number)-1] | 0x20 // ASCII lower case
	if sh, ok := unitShift[last]; ok {
		shift = sh
		number = number[:len(number)-1]
	}
	if !isDecimal(number) {
		return 0, fmt.Errorf("size %q: %s", s, sizeExpected)
	}
	value, ok := new(big.Rat).SetString(number)
	if !ok {
		return 0, fmt.Errorf("size %q: %s", s, sizeExpected)
	}
	value.Mul(value, new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), shift)))
	if value.Sign() <= 0 {
		return 0, fmt.Errorf("size %q: must be greater than zero", s)
	}
	// Round up to whole sectors: lvm2 takes a fraction of any unit
	// ("1.3G"), but a byte count only in multiples of 512.
	sectorBytes := new(big.Int).Mul(value.Denom(), big.NewInt(sectorSize))
	sectors, rest := new(big.Int).QuoRem(value.Num(), sectorBytes, new(big.Int))
	if rest.Sign() > 0 {
		sectors.Add(sectors, big.NewInt(1))
	}
	bytes := sectors.Mul(sectors, big.NewInt(sectorSize))
	if !bytes.IsInt64() {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return bytes.Int64(), nil
}

// isDecimal accepts digits with at most one decimal point and at least one
// digit: "100", "1.5", ".5", "2.".
func isDecimal(s string) bool {
	digits, points := 0, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] >= '0' && s[i] <= '9':
			digits++
		case s[i] == '.':
			points++
		default:
			return false
		}
	}
	return digits > 0 && points <= 1 && len(s) <= 40
}

// FormatBytes renders n in the largest binary unit that keeps it readable:
// "100.00 MiB".
func FormatBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	value := float64(n)
	i := 0
	for value >= 1024 && i < len(units)-1 {
		value /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.2f %s", value, units[i])
}
