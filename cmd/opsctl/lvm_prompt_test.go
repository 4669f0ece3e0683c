package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/testenv"
)

// openPTY returns the master and the slave of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		testenv.Missing(t, "no pseudo-terminal: "+err.Error())
	}
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

// TestLVMCacheCtrlCAtTheConfirmationAborts: Ctrl-C at "Proceed? [y/N]"
// ends opsctl at once, as it does at any prompt; nothing has changed yet.
func TestLVMCacheCtrlCAtTheConfirmationAborts(t *testing.T) {
	lvm := fakeLVM(t)
	_, slave := openPTY(t)
	// The guard only ends a hung opsctl; it is not part of the assertion.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Opsctl(t), "lvm", "--lvm", lvm, "--state-dir", t.TempDir(), "cache", "remove", "storage/slowlv")
	cmd.Stdin = slave
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for the question, then press Ctrl-C.
	prompt := bufio.NewReader(stderr)
	var seen strings.Builder
	for !strings.Contains(seen.String(), "Proceed? [y/N] ") {
		b, err := prompt.ReadByte()
		if err != nil {
			_ = cmd.Wait()
			t.Fatalf("no confirmation prompt: %v; stderr %q", err, seen.String())
		}
		seen.WriteByte(b)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("opsctl after Ctrl-C at the prompt: %v", err)
	}
	status := exitErr.Sys().(syscall.WaitStatus)
	if !status.Signaled() || status.Signal() != syscall.SIGINT {
		t.Errorf("opsctl after Ctrl-C at the prompt: %v (ctx %v); want it ended by SIGINT, not left waiting for an answer", err, ctx.Err())
	}
}
