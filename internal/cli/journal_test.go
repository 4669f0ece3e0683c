package cli

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Under systemd (stderr is the journal), each record is one line starting
// with its sd-daemon priority, with no time= and level= (the journal
// records both) and the message bare.
func TestJournalLoggerWritesOnePriorityLinePerRecord(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, slog.LevelDebug, true)
	log.Debug("exec", "argv", "lvm lvs")
	log.Info("listening", "addr", "127.0.0.1:8686")
	log.Warn("refused a client: uid not allowed", "uid", 1000, "pid", 42)
	log.Error("state file", "err", "disk full\nsecond line")
	log.With("run", "r1").WithGroup("gitlab").Warn("retrying", "status", 502)
	log.Info("two\nlines")
	want := `<7>exec argv="lvm lvs"
<6>listening addr=127.0.0.1:8686
<4>refused a client: uid not allowed uid=1000 pid=42
<3>state file err="disk full\nsecond line"
<4>retrying run=r1 gitlab.status=502
<6>"two\nlines"
`
	if buf.String() != want {
		t.Errorf("journal lines:\n%s\nwant:\n%s", buf.String(), want)
	}

	buf.Reset()
	NewLogger(&buf, slog.LevelWarn, true).Info("not shown")
	if buf.Len() != 0 {
		t.Errorf("below the level: %q", buf.String())
	}
}

// Elsewhere (a terminal, a file, a pipe): slog's text format, as before.
func TestLoggerOutsideTheJournalIsSlogText(t *testing.T) {
	var buf bytes.Buffer
	NewLogger(&buf, slog.LevelInfo, false).Warn("refused a client", "uid", 1000)
	if line := buf.String(); !strings.HasPrefix(line, "time=") || !strings.Contains(line, ` level=WARN msg="refused a client" uid=1000`) {
		t.Errorf("text line %q", line)
	}
}

// JOURNAL_STREAM names the journal's stream by device and inode; stderr is
// the journal only when it is that very file (a shell in a unit may have
// redirected it, and the variable is inherited by every child).
func TestIsJournalStreamComparesDeviceAndInode(t *testing.T) {
	dir := t.TempDir()
	journal, err := os.Create(filepath.Join(dir, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	defer journal.Close()
	other, err := os.Create(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(journal.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	value := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	if !IsJournalStream(value, journal) {
		t.Errorf("JOURNAL_STREAM=%s: the file it names is not recognised", value)
	}
	for _, v := range []string{"", value + "0", "x:y", fmt.Sprintf("%d", st.Ino), fmt.Sprintf("%d:%d", st.Dev+1, st.Ino)} {
		if IsJournalStream(v, journal) {
			t.Errorf("JOURNAL_STREAM=%q taken for the file %s", v, value)
		}
	}
	if IsJournalStream(value, other) {
		t.Error("another file taken for the journal")
	}
}

func TestProgressLinesCarryAPriorityInTheJournal(t *testing.T) {
	var buf bytes.Buffer
	p := NewProgress(&IOStreams{ErrOut: &buf, ErrIsJournal: true}, "flush", 4)
	p.Update(2)
	p.Done()
	if want := "<6>flush: 2/4\n<6>flush: 4/4 done\n"; buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}

// Log lines carry what peers send (a user name from an Exim request, a
// GitLab error): whatever a message or a value holds, a record is exactly
// one line with one priority, so nothing can forge a journal entry of its
// own (a "\n<3>..." inside a user name).
func FuzzJournalRecordIsOneLine(f *testing.F) {
	f.Add("login rejected", "alice", 4)
	f.Add("two\nlines", "x\n<3>forged", 8)
	f.Add("", "", 0)
	f.Add("\r<0>", "\x00\x1b[31m", -4)
	f.Fuzz(func(t *testing.T, msg, value string, level int) {
		var buf bytes.Buffer
		NewLogger(&buf, slog.Level(math.MinInt), true).With("run", value).Log(context.Background(), slog.Level(level), msg, "user", value)
		out := buf.String()
		if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") || strings.ContainsAny(out, "\r\x00") {
			t.Fatalf("not one line: %q", out)
		}
		if p := JournalPriority(slog.Level(level)); !strings.HasPrefix(out, p) {
			t.Fatalf("line %q does not start with its priority %s", out, p)
		}
	})
}

func TestStderrLinesHaveOneFormatAndAPriorityInTheJournal(t *testing.T) {
	var plain, journal bytes.Buffer
	p := &IOStreams{ErrOut: &plain}
	j := &IOStreams{ErrOut: &journal, ErrIsJournal: true}
	for _, s := range []*IOStreams{p, j} {
		s.Sayf("wrote %s", "/boot/grub/menu.lst")
		s.Warnf("g/a: %s", "FROM ${BASE} has no default")
		s.Failf("chain scan: %s", "two\nlines")
	}
	if want := "wrote /boot/grub/menu.lst\nwarning: g/a: FROM ${BASE} has no default\nopsctl: chain scan: two\nlines\n"; plain.String() != want {
		t.Errorf("on a terminal or a file: %q, want %q", plain.String(), want)
	}
	if want := "<6>wrote /boot/grub/menu.lst\n<4>warning: g/a: FROM ${BASE} has no default\n<3>opsctl: \"chain scan: two\\nlines\"\n"; journal.String() != want {
		t.Errorf("in the journal: %q, want %q", journal.String(), want)
	}
}
