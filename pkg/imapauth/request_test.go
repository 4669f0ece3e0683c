package imapauth

import (
	"encoding/base64"
	"strings"
	"testing"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestParseRequestDecodesBothFields(t *testing.T) {
	cases := []struct {
		line, user, password string
	}{
		{b64("alice") + " " + b64("secret") + "\n", "alice", "secret"},
		{b64("alice") + " " + b64(`with "quotes" \ and spaces`) + "\n", "alice", `with "quotes" \ and spaces`},
		{b64("jörg@example.org") + " " + b64("pässwörd 密码") + "\r\n", "jörg@example.org", "pässwörd 密码"},
		{b64("alice") + " \n", "alice", ""},
	}
	for _, tc := range cases {
		user, password, err := ParseRequest([]byte(tc.line))
		if err != nil || user != tc.user || password != tc.password {
			t.Errorf("%q: got %q %q %v, want %q %q", tc.line, user, password, err, tc.user, tc.password)
		}
	}
}

func TestParseRequestRejectsMalformedLines(t *testing.T) {
	cases := map[string]string{
		"no newline":          b64("alice") + " " + b64("pw"),
		"no space":            b64("alice") + b64("pw") + "\n",
		"three fields":        b64("alice") + " " + b64("pw") + " " + b64("x") + "\n",
		"empty user":          " " + b64("pw") + "\n",
		"not base64":          "alice secret\n",
		"unpadded":            "YWxpY2U " + b64("pw") + "\n",
		"URL alphabet":        b64("alice") + " " + "-_-_\n",
		"leading space":       " " + b64("alice") + " " + b64("pw") + "\n",
		"plain-text password": b64("alice") + " hunter2!\n",
	}
	for name, line := range cases {
		_, _, err := ParseRequest([]byte(line))
		if err == nil {
			t.Errorf("%s: %q accepted", name, line)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: the error shows the request's content: %v", name, err)
		}
	}
}

// FuzzParseRequest checks that the parser never panics, that what it
// accepts re-encodes to the same request, and that its errors never repeat
// the request.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(b64("alice") + " " + b64("secret") + "\n"))
	f.Add([]byte(b64("a") + " \r\n"))
	f.Add([]byte("alice secret\n"))
	f.Fuzz(func(t *testing.T, line []byte) {
		user, password, err := ParseRequest(line)
		if err != nil {
			if len(line) > 12 && strings.Contains(err.Error(), string(line)) {
				t.Fatalf("error repeats the request: %v", err)
			}
			return
		}
		if user == "" {
			t.Fatal("empty user accepted")
		}
		again := b64(user) + " " + b64(password) + "\n"
		if again != string(line) && again != strings.TrimSuffix(string(line), "\r\n")+"\n" {
			t.Fatalf("%q parsed as %q %q, which encodes as %q", line, user, password, again)
		}
	})
}
