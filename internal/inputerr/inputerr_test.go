package inputerr

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"testing"
)

func TestRenameShowsTheFlagInsideWrappedErrors(t *testing.T) {
	err := fmt.Errorf("imap-auth serve: %w", New("Config.Server", `"x:y:z"`, "expected HOST or HOST:PORT"))
	if got := err.Error(); got != `imap-auth serve: Config.Server "x:y:z": expected HOST or HOST:PORT` {
		t.Fatalf("before Rename: %q", got)
	}
	err = Rename(err, map[string]string{"Config.Server": "--server", "Config.ServerName": "--server-name"})
	if got := err.Error(); got != `imap-auth serve: --server "x:y:z": expected HOST or HOST:PORT` {
		t.Fatalf("after Rename: %q", got)
	}
}

func TestRenameLeavesOtherInputsAndKeepsTheCause(t *testing.T) {
	err := &Error{Name: "Config.CAFile", Value: "/x", Problem: "does not exist", Err: fs.ErrNotExist}
	renamed := Rename(err, map[string]string{"Config.Server": "--server"})
	if got := renamed.Error(); got != "Config.CAFile /x: does not exist" {
		t.Errorf("got %q", got)
	}
	if !errors.Is(Rename(err, map[string]string{"Config.CAFile": "--ca-file"}), fs.ErrNotExist) {
		t.Error("the cause is lost")
	}
	if Rename(nil, nil) != nil {
		t.Error("nil became an error")
	}
	hint := errors.New("certificate not trusted (check Config.CAFile)")
	if got := Rename(hint, map[string]string{"Config.CAFile": "--ca-file"}).Error(); got != "certificate not trusted (check --ca-file)" {
		t.Errorf("a hint: got %q", got)
	}
}

func TestNoValueMeansNoSpace(t *testing.T) {
	if got := New("Config.Server", "", "empty, expected HOST or HOST:PORT").Error(); got != "Config.Server: empty, expected HOST or HOST:PORT" {
		t.Errorf("got %q", got)
	}
}

func TestRenameReplacesWholeNamesOnly(t *testing.T) {
	err := fmt.Errorf("check: %w", New("Config.ServerName", `"a b"`, "expected a host name"))
	got := Rename(err, map[string]string{"Config.Server": "--server", "Config.ServerName": "--server-name"}).Error()
	if got != `check: --server-name "a b": expected a host name` {
		t.Errorf("got %q", got)
	}
	joined := errors.Join(New("Plan.Size", "0", "expected more"), New("Plan.Name", `"x"`, "taken"))
	got = Rename(joined, map[string]string{"Plan.Size": "--size", "Plan.Name": "--name"}).Error()
	if got != "--size 0: expected more\n--name \"x\": taken" {
		t.Errorf("joined: got %q", got)
	}
}

func TestRenameTextShowsTheFlagsInText(t *testing.T) {
	got := RenameText("g/a: skipped, see Source.Root and Source.RootDir", map[string]string{"Source.Root": "--dir"})
	if got != "g/a: skipped, see --dir and Source.RootDir" {
		t.Errorf("got %q", got)
	}
}

// A daemon's log line shows the flags in its message, in string and error
// attributes, in groups and in attributes given to With.
func TestRenameHandlerShowsTheFlagsInLogLines(t *testing.T) {
	var out strings.Builder
	names := map[string]string{"Config.Server": "--server", "Config.CAFile": "--ca-file"}
	log := slog.New(RenameHandler(slog.NewTextHandler(&out, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}), names)).With("where", "check Config.Server")
	log.Warn("not trusted (check Config.CAFile)", "err", errors.New("Config.Server \"x\": bad"), "n", 3,
		slog.Group("g", "hint", "check Config.CAFile"))
	want := `level=WARN msg="not trusted (check --ca-file)" where="check --server" err="--server \"x\": bad" n=3 g.hint="check --ca-file"` + "\n"
	if out.String() != want {
		t.Errorf("got  %q\nwant %q", out.String(), want)
	}
}
