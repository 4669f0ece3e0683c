package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

type tempErr struct{}

func (tempErr) Error() string   { return "server busy" }
func (tempErr) Temporary() bool { return true }

func TestExitCodeMapping(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, ExitOK},
		{"plain", errors.New("boom"), ExitFailure},
		{"usage", Usagef("bad flag"), ExitUsage},
		{"wrapped usage", fmt.Errorf("ctx: %w", Usagef("bad")), ExitUsage},
		{"temporary", fmt.Errorf("ctx: %w", tempErr{}), ExitTemporary},
		{"deadline", fmt.Errorf("dial: %w", context.DeadlineExceeded), ExitTemporary},
		{"silent negative", Silent(ExitFailure), ExitFailure},
	}
	for _, tc := range cases {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("%s: ExitCode = %d, want %d", tc.name, got, tc.want)
		}
	}
	if Message(Silent(1)) != "" {
		t.Error("a silent error printed a message")
	}
}

func TestOutputFlagRejectsUnknownFormat(t *testing.T) {
	o := &OutputFlag{Value: "text", allowed: []string{"text", "json"}}
	if err := o.Set("yaml"); err == nil {
		t.Fatal("yaml accepted")
	}
	if err := o.Set("json"); err != nil || !o.JSON() {
		t.Fatalf("json: %v", err)
	}
}

func TestReadSecretFileTrimsOneNewline(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{"a\n": "a", "a\n\n": "a\n", "a": "a", "a b\r\n": "a b"}
	for content, want := range cases {
		path := filepath.Join(dir, "s")
		os.WriteFile(path, []byte(content), 0o600)
		got, err := ReadSecretFile(path)
		if err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", content, got, err, want)
		}
	}
	os.WriteFile(filepath.Join(dir, "empty"), []byte("\n"), 0o600)
	if _, err := ReadSecretFile(filepath.Join(dir, "empty")); err == nil {
		t.Error("empty secret accepted")
	}
	os.WriteFile(filepath.Join(dir, "secret"), []byte("hunter2"), 0o000)
	_, err := ReadSecretFile(filepath.Join(dir, "missing"))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("missing file: %v", err)
	}
}

func TestProgressPlainLinesAreThrottled(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	p := NewProgress(&IOStreams{ErrOut: &buf}, "flush", 100)
	p.now = func() time.Time { return now }
	p.Update(10)
	now = now.Add(time.Second)
	p.Update(20) // within LogEvery: not shown
	now = now.Add(10 * time.Second)
	p.Update(30)
	p.Done()
	want := "flush: 10/100\nflush: 30/100\nflush: 100/100 done\n"
	if buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}

// With ShowRate, a line says what is left, the rate since the first update
// and the time left at that rate (lvm's flushes).
func TestProgressShowsTheRateAndTheTimeLeft(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	p := NewProgress(&IOStreams{ErrOut: &buf}, "flush", 300)
	p.ShowRate = true
	p.now = func() time.Time { return now }
	p.Update(0)
	now = now.Add(10 * time.Second)
	p.Update(100)
	p.Done()
	want := "flush: 0/300 (300 left)\nflush: 100/300 (200 left, 10.0/s, about 20s left)\nflush: 300/300 done\n"
	if buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}

func TestProgressBarOnTerminal(t *testing.T) {
	var buf bytes.Buffer
	p := NewProgress(&IOStreams{ErrOut: &buf, ErrIsTerminal: true}, "flush", 4)
	p.Update(2)
	if !strings.Contains(buf.String(), "\rflush [###############...............] 2/4") {
		t.Errorf("got %q", buf.String())
	}
}

// Stop ends the bar's line on a terminal, and writes nothing in a log.
func TestProgressStopEndsTheBarsLine(t *testing.T) {
	var term, log bytes.Buffer
	for _, buf := range []*bytes.Buffer{&term, &log} {
		p := NewProgress(&IOStreams{ErrOut: buf, ErrIsTerminal: buf == &term}, "flush", 4)
		p.Update(2)
		p.Stop()
	}
	if !strings.HasSuffix(term.String(), " 2/4\n") || log.String() != "flush: 2/4\n" {
		t.Errorf("terminal %q, log %q", term.String(), log.String())
	}
}

func TestEnumTakesItsChoicesInAnyCaseAndItsAliases(t *testing.T) {
	flags := pflag.NewFlagSet("t", pflag.ContinueOnError)
	var xen string
	EnumVar(flags, &xen, "xen", "4.17", []string{"4.17", "4.1"}, "release").Accept("4.1.2")
	var tls string
	EnumVar(flags, &tls, "tls", "implicit", []string{"implicit", "starttls"}, "mode")
	if xen != "4.17" || tls != "implicit" {
		t.Fatalf("defaults: %q %q", xen, tls)
	}
	if err := flags.Parse([]string{"--tls", "STARTTLS", "--xen", "4.1.2"}); err != nil || tls != "starttls" || xen != "4.1.2" {
		t.Fatalf("parse: %v, tls %q, xen %q", err, tls, xen)
	}
	err := flags.Set("xen", "4.2")
	if err == nil || !strings.Contains(err.Error(), "expected 4.17 or 4.1") {
		t.Errorf("--xen 4.2: %v", err)
	}
	if err := flags.Set("tls", "ssl"); err == nil || !strings.Contains(err.Error(), "expected implicit or starttls") {
		t.Errorf("--tls ssl: %v", err)
	}
	if got := flags.Lookup("xen").Value.Type(); got != "4.17|4.1" {
		t.Errorf("help shows --xen %s, want the choices without the alias", got)
	}
	if got := flags.Lookup("xen").Value.(Chooser).Choices(); len(got) != 2 {
		t.Errorf("completion offers %q", got)
	}
	if got := joinOr([]string{"auto", "online", "recache"}); got != "auto, online or recache" {
		t.Errorf("joinOr: %q", got)
	}
}
