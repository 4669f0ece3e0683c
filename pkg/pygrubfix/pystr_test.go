package pygrubfix

import (
	"encoding/json"
	"os/exec"
	"testing"
)

// TestPythonCharacterClassesMatch holds pyIsSpace and decimalValue to the
// interpreter pygrub runs with, over every code point.
func TestPythonCharacterClassesMatch(t *testing.T) {
	script := `
import json, unicodedata
print(json.dumps({"space": [c for c in range(0x110000) if chr(c).isspace()],
                  "decimal": [[c, unicodedata.decimal(chr(c))] for c in range(0x110000) if chr(c).isdecimal()]}))
`
	out, err := exec.Command(pygrubPython(t), "-B", "-c", script).Output()
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Space   []rune
		Decimal [][2]int
	}
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	space := map[rune]bool{}
	for _, r := range want.Space {
		space[r] = true
	}
	decimal := map[rune]int{}
	for _, d := range want.Decimal {
		decimal[rune(d[0])] = d[1]
	}
	for r := rune(0); r < 0x110000; r++ {
		if pyIsSpace(r) != space[r] {
			t.Errorf("U+%04X: pyIsSpace %v, python %v", r, pyIsSpace(r), space[r])
		}
		v, ok := decimalValue(r)
		if w, isDec := decimal[r]; ok != isDec || v != w {
			t.Errorf("U+%04X: decimal %d %v, python %d %v", r, v, ok, w, isDec)
		}
	}
}

func TestPyIntAndSplit(t *testing.T) {
	for in, want := range map[string]int64{" 7 ": 7, "+3": 3, "1_0": 10, "٣": 3, "-0": 0} {
		n, err := pyInt(in)
		if err != nil || n.value != want {
			t.Errorf("pyInt(%q) = %+v, %v", in, n, err)
		}
	}
	for _, bad := range []string{"", "_1", "1_", "1__0", "- 1", "0x10", "1.0"} {
		if _, err := pyInt(bad); err == nil {
			t.Errorf("pyInt(%q) accepted", bad)
		}
	}
	got := pySplitSpace("  a \t b  c ", 1)
	if len(got) != 2 || got[0] != "a" || got[1] != "b  c " {
		t.Errorf("pySplitSpace = %q", got)
	}
}
