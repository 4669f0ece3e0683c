package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The rule for files and folders named on the command line: missing or
// not the kind expected is a usage error (2) naming the flag; trouble with
// one that is there is a failure (1).
func TestPathRuleExitCodes(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	cases := []struct {
		name string
		err  error
		code int
		want string
	}{
		{"file missing", NeedFile("--grub-cfg", missing), ExitUsage, "--grub-cfg " + missing + ": does not exist, expected a file"},
		{"file is a folder", NeedFile("--grub-cfg", dir), ExitUsage, "--grub-cfg " + dir + ": a folder, expected a regular file"},
		{"file is a device", NeedFile("--pygrub", "/dev/zero"), ExitUsage, "--pygrub /dev/zero: a character device, expected a regular file"},
		{"file is a FIFO", NeedFile("--token-file", fifo), ExitUsage, "a FIFO, expected a regular file"},
		{"file is there", NeedFile("--grub-cfg", file), ExitOK, ""},
		{"folder missing", NeedDir("--dir", missing), ExitUsage, "--dir " + missing + ": does not exist, expected a folder"},
		{"folder is a file", NeedDir("--dir", file), ExitUsage, "--dir " + file + ": a regular file, expected a folder"},
		{"folder is there", NeedDir("--dir", dir), ExitOK, ""},
		{"parent missing", NeedParentDir("-w", filepath.Join(missing, "menu.lst")), ExitUsage, "-w " + filepath.Join(missing, "menu.lst") + ": folder " + missing + " does not exist"},
		{"parent is a file", NeedParentDir("--state", filepath.Join(file, "chain.db")), ExitUsage, "is a regular file, expected a folder"},
		{"parent is there", NeedParentDir("--state", filepath.Join(dir, "new.db")), ExitOK, ""},
		{"open: missing", PathError("--ca-file", openErr(missing)), ExitUsage, "--ca-file: open " + missing + ": no such file or directory"},
		{"open: a folder for writing", PathError("-w", openForWrite(dir)), ExitUsage, "-w: open " + dir + ": is a directory"},
		{"open: symlink refused", PathError("-w", &fs.PathError{Op: "open", Path: "/x", Err: syscall.ELOOP}), ExitUsage, "-w: open /x"},
		{"open: wrong kind", PathError("--state", &WrongKindError{Path: fifo, Kind: "a FIFO", Want: "a regular file"}), ExitUsage, "--state: " + fifo + " is a FIFO, expected a regular file"},
		{"open: permission", PathError("--state", &fs.PathError{Op: "open", Path: file, Err: syscall.EACCES}), ExitFailure, "--state: open " + file + ": permission denied"},
		{"read: I/O", PathError("--grub-cfg", fmt.Errorf("read %s: %w", file, syscall.EIO)), ExitFailure, "input/output error"},
		{"nil", PathError("--x", nil), ExitOK, ""},
	}
	for _, tc := range cases {
		if got := ExitCode(tc.err); got != tc.code {
			t.Errorf("%s: exit %d, want %d (%v)", tc.name, got, tc.code, tc.err)
		}
		if tc.err != nil && (!strings.Contains(tc.err.Error(), tc.want) || strings.Contains(tc.err.Error(), "\n")) {
			t.Errorf("%s: %q, want one line with %q", tc.name, tc.err, tc.want)
		}
	}
}

func openErr(path string) error {
	f, err := os.Open(path)
	if err == nil {
		f.Close()
	}
	return err
}

func openForWrite(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err == nil {
		f.Close()
	}
	return err
}

// A secret file is read once, bounded, and only from a regular file: a
// FIFO nobody writes to must not hang a unit, a device must not be read
// for ever, and both are usage errors under the rule.
func TestReadSecretFileRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ReadSecretFile(fifo)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrWrongKind) || ExitCode(PathError("--token-file", err)) != ExitUsage {
			t.Errorf("FIFO: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("ReadSecretFile on a FIFO without a writer did not return")
	}
	if _, err := ReadSecretFile("/dev/zero"); !errors.Is(err, ErrWrongKind) {
		t.Errorf("/dev/zero: %v", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, maxSecretBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSecretFile(big); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("a secret file of %d bytes: %v", maxSecretBytes+1, err)
	}
	if _, err := ReadSecretFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) || ExitCode(PathError("--token-file", err)) != ExitUsage {
		t.Errorf("missing: %v", err)
	}
}

func TestReadSecretFileErrorsNameTheFileOnce(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "token")
	_, err := ReadSecretFile(missing)
	if want := "secret file " + missing + ": no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("missing: %v, want %q", err, want)
	}
	if _, err := ReadSecretFile("/dev/null"); err == nil || err.Error() != "secret file /dev/null is a character device, expected a regular file" {
		t.Errorf("/dev/null: %v", err)
	}
}
