package sockspy

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// extcapSentence is one line of the extcap grammar as Wireshark's parser
// reads it: a sentence keyword, then {key=value} fields whose values hold
// no braces (Wireshark ends a value at "}{", "}" at the end, or "} ").
var extcapSentence = regexp.MustCompile(`^(arg|value|interface|extcap|dlt) (\{[a-z]+=[^{}\n]*\})+$`)

// sentences checks that out is made of valid sentences and returns them.
func sentences(t *testing.T, out string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for _, line := range lines {
		if !extcapSentence.MatchString(line) {
			t.Errorf("not an extcap sentence Wireshark reads: %q", line)
		}
	}
	return lines
}

func TestExtcapConfigOffersTheSocketsItCanName(t *testing.T) {
	sockets := []UnixSocket{
		{Path: "/run/app.sock", Type: Stream, Listening: true},
		{Path: "@/tmp/.X11-unix/X0", Type: Stream, Listening: true},
		{Path: "/run/systemd/journal/dev-log", Type: Datagram, Listening: true},
		// What the grammar cannot carry: typed by hand instead.
		{Path: "/tmp/x}{display=forged}", Type: Stream, Listening: true},
		{Path: "/tmp/bad\xff.sock", Type: Stream, Listening: true},
		{Path: "/tmp/tab\t.sock", Type: Stream, Listening: true},
	}
	var out bytes.Buffer
	if err := WriteExtcapConfig(&out, sockets); err != nil {
		t.Fatal(err)
	}
	lines := sentences(t, out.String())
	want := []string{
		"value {arg=0}{value=/run/app.sock}{display=/run/app.sock (stream)}{default=false}",
		"value {arg=0}{value=@/tmp/.X11-unix/X0}{display=@/tmp/.X11-unix/X0 (stream)}{default=false}",
		"value {arg=0}{value=/run/systemd/journal/dev-log}{display=/run/systemd/journal/dev-log (datagram)}{default=false}",
		"value {arg=2}{value=swap}{display=swap: clients need no change}{default=true}",
	}
	for _, w := range want {
		if !strings.Contains(out.String(), w+"\n") {
			t.Errorf("config lacks %q:\n%s", w, out.String())
		}
	}
	if strings.Contains(out.String(), "forged") || strings.Contains(out.String(), "bad") || strings.Contains(out.String(), "tab") {
		t.Errorf("a socket the grammar cannot carry is offered:\n%s", out.String())
	}
	calls := map[string]bool{}
	for _, line := range lines {
		if m := regexp.MustCompile(`\{call=--([a-z-]+)\}`).FindStringSubmatch(line); m != nil {
			calls[m[1]] = true
		}
	}
	for _, call := range []string{ExtcapSocket, ExtcapSocketPath, ExtcapMode, ExtcapProxy, ExtcapPort} {
		if !calls[call] {
			t.Errorf("no argument calls --%s", call)
		}
	}
}

// TestExtcapConfigListsAtMostSoMany: every user can make sockets; the
// list in Wireshark's dialog stays bounded.
func TestExtcapConfigListsAtMostSoMany(t *testing.T) {
	var sockets []UnixSocket
	for i := range extcapMaxSockets + 50 {
		sockets = append(sockets, UnixSocket{Path: fmt.Sprintf("@s%05d", i), Type: Stream, Listening: true})
	}
	var out bytes.Buffer
	if err := WriteExtcapReload(&out, ExtcapSocket, sockets); err != nil {
		t.Fatal(err)
	}
	if n := len(sentences(t, out.String())); n != extcapMaxSockets {
		t.Errorf("%d values, want %d", n, extcapMaxSockets)
	}
	out.Reset()
	if err := WriteExtcapReload(&out, "mode", sockets); err != nil || out.Len() != 0 {
		t.Errorf("reloading another option wrote %q, %v", out.String(), err)
	}
}

func TestExtcapInterfacesAndDLTs(t *testing.T) {
	var out bytes.Buffer
	if err := WriteExtcapInterfaces(&out, "1.2.3}{x"); err != nil {
		t.Fatal(err)
	}
	if err := WriteExtcapDLTs(&out); err != nil {
		t.Fatal(err)
	}
	lines := sentences(t, out.String())
	want := []string{
		"extcap {version=dev}{display=opsctl sock capture}",
		"interface {value=opsctl_sock}{display=UNIX socket (opsctl)}",
	}
	if len(lines) != 3 || lines[0] != want[0] || lines[1] != want[1] || !strings.HasPrefix(lines[2], "dlt {number=101}{name=RAW}") {
		t.Errorf("got\n%s", out.String())
	}
}

// tshark40Folders is `tshark -G folders` of Wireshark 4.0.17 (Debian 12).
const tshark40Folders = "Temp:                \t/tmp\nPersonal configuration:\t/root/.config/wireshark\n" +
	"Global configuration:\t/usr/share/wireshark\nSystem:              \t/etc\nProgram:             \t/usr/bin\n" +
	"Personal Plugins:    \t/root/.local/lib/wireshark/plugins/4.0\nGlobal Plugins:      \t/usr/lib/x86_64-linux-gnu/wireshark/plugins/4.0\n" +
	"Personal Lua Plugins:\t/root/.local/lib/wireshark/plugins\nGlobal Lua Plugins:  \t/usr/lib/x86_64-linux-gnu/wireshark/plugins\n" +
	"Extcap path:         \t/usr/lib/x86_64-linux-gnu/wireshark/extcap\nMaxMind database path:\t/usr/share/GeoIP\n"

// tshark44Folders is the shape of later releases: personal and global
// extcap folders.
const tshark44Folders = "Personal Extcap path:\t/root/.local/lib/wireshark/extcap\n" +
	"Global Extcap path:  \t/usr/lib/x86_64-linux-gnu/wireshark/extcap\n"

func TestParseTsharkFoldersFindsTheGlobalExtcapFolder(t *testing.T) {
	for name, out := range map[string]string{"4.0": tshark40Folders, "4.4": tshark44Folders} {
		if got, ok := ParseTsharkFolders(out); !ok || got != "/usr/lib/x86_64-linux-gnu/wireshark/extcap" {
			t.Errorf("%s: %q %v", name, got, ok)
		}
	}
	if got, ok := ParseTsharkFolders("Temp: /tmp\nExtcap path: relative/dir\n"); ok {
		t.Errorf("a relative folder was taken: %q", got)
	}
}

// FuzzParseTsharkFolders: whatever tshark prints, the folder found is an
// absolute path on one line, found in a line that names an extcap path.
func FuzzParseTsharkFolders(f *testing.F) {
	f.Add(tshark40Folders)
	f.Add(tshark44Folders)
	f.Fuzz(func(t *testing.T, out string) {
		folder, ok := ParseTsharkFolders(out)
		if !ok {
			return
		}
		if !strings.HasPrefix(folder, "/") || strings.ContainsAny(folder, "\n") || folder != strings.TrimSpace(folder) {
			t.Fatalf("folder %q", folder)
		}
		if !strings.Contains(out, "Extcap path") {
			t.Fatalf("folder %q from output without an extcap path", folder)
		}
	})
}
