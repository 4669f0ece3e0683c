package sockspy

import (
	"bytes"
	"strings"
	"testing"
)

// The expected lines are what socat 1.7.4.4 prints with -x -v for the
// same bytes: a hex line ends after 16 bytes or after a newline.
func TestHexdumpBreaksLinesAfterNewlineLikeSocat(t *testing.T) {
	tests := []struct {
		data string
		want string
	}{
		{"hello world\n0123456789abcdefXYZ\t\x80\xff",
			" 68 65 6c 6c 6f 20 77 6f 72 6c 64 0a              hello world.\n" +
				" 30 31 32 33 34 35 36 37 38 39 61 62 63 64 65 66  0123456789abcdef\n" +
				" 58 59 5a 09 80 ff                                XYZ...\n"},
		{"a\r\nb\n\nc",
			" 61 0d 0a                                         a..\n" +
				" 62 0a                                            b.\n" +
				" 0a                                               .\n" +
				" 63                                               c\n"},
		{"0123456789abcde\nX",
			" 30 31 32 33 34 35 36 37 38 39 61 62 63 64 65 0a  0123456789abcde.\n" +
				" 58                                               X\n"},
		{"0123456789abcdef\nX",
			" 30 31 32 33 34 35 36 37 38 39 61 62 63 64 65 66  0123456789abcdef\n" +
				" 0a                                               .\n" +
				" 58                                               X\n"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		NewHexdump(&out).Dump(1, ToServer, 0, []byte(tt.data))
		lines := strings.SplitN(out.String(), "\n", 2)
		if len(lines) != 2 {
			t.Fatalf("%q: no header line in %q", tt.data, out.String())
		}
		if got := strings.TrimSuffix(lines[1], "--\n"); got != tt.want {
			t.Errorf("%q: got\n%s\nwant (socat -x -v)\n%s", tt.data, got, tt.want)
		}
	}
}
