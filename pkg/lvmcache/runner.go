package lvmcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// reportArgs make every lvm2 report machine-readable: JSON, sizes in bytes
// without a unit suffix.
var reportArgs = []string{"--reportformat", "json", "--units", "b", "--nosuffix"}

// DefaultReportTimeout bounds an lvm2 report (lvs, pvs, vgs, version).
// One answers in well under a second; one that takes a minute waits for a
// VG lock another lvm2 command holds, or for a device that does not
// answer, and will not do better for waiting longer.
const DefaultReportTimeout = 60 * time.Second

// killWait is how long a killed lvm2 is given to exit: a process stuck in
// the kernel (a dead device) may not, and opsctl does not wait for it.
const killWait = 5 * time.Second

// Runner runs lvm2, and device-mapper's dmsetup for what lvm2 does not
// offer (dm-cache's runtime migration_threshold and its promotion and
// demotion counters). It is the one place where opsctl executes either:
// every call gets LC_ALL=C, and its exact argv is logged at debug level.
type Runner struct {
	// Path is the lvm executable: "lvm" (looked up on PATH) when empty.
	Path string
	// Dmsetup is the dmsetup executable: "dmsetup" (looked up on PATH)
	// when empty.
	Dmsetup string
	// Logger receives the argv of every call at debug level; nil discards.
	Logger *slog.Logger
	// ReportTimeout bounds each report: DefaultReportTimeout when zero. A
	// change (lvconvert, lvresize, lvcreate) has no time limit: lvm2
	// must finish what it began, and a flush may take hours.
	ReportTimeout time.Duration
}

func (r *Runner) reportTimeout() time.Duration {
	if r == nil || r.ReportTimeout <= 0 {
		return DefaultReportTimeout
	}
	return r.ReportTimeout
}

// TimeoutError is an lvm2 report that did not answer in time; it was
// killed with its process group. It is temporary: lvm2 may have waited for
// a lock that another lvm2 command holds.
type TimeoutError struct {
	Argv  []string
	After time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s did not answer within %s and was killed: lvm2 may be waiting for a lock another lvm2 command holds, or for a device that does not answer; try again later",
		strings.Join(e.Argv[:min(2, len(e.Argv))], " "), e.After)
}

func (e *TimeoutError) Temporary() bool { return true }

// Executable is the lvm command as it is run and shown in plans.
func (r *Runner) Executable() string {
	if r == nil || r.Path == "" {
		return "lvm"
	}
	return r.Path
}

// DmsetupExecutable is the dmsetup command as it is run and shown in plans.
func (r *Runner) DmsetupExecutable() string {
	if r == nil || r.Dmsetup == "" {
		return "dmsetup"
	}
	return r.Dmsetup
}

// NotFoundError is an lvm2 (or dmsetup) executable that does not exist:
// not on PATH when OnPath, else not at Path.
type NotFoundError struct {
	Path   string
	OnPath bool
	// Tool is what the executable is: "lvm2" or "dmsetup".
	Tool string
}

func (e *NotFoundError) Error() string {
	tool := e.Tool
	if tool == "" {
		tool = "lvm2"
	}
	if e.OnPath {
		return fmt.Sprintf("%s executable %q not found on PATH", tool, e.Path)
	}
	return fmt.Sprintf("%s executable %q not found", tool, e.Path)
}

// CommandError is an lvm2 command that exited non-zero. Stderr holds what
// lvm printed on its error stream, trimmed.
type CommandError struct {
	Argv     []string
	ExitCode int
	Stderr   string
}

func (e *CommandError) Error() string {
	msg := lastLines(e.Stderr, 2)
	if msg == "" {
		msg = "no error message"
	}
	return fmt.Sprintf("%s failed (exit %d): %s", strings.Join(e.Argv[:min(2, len(e.Argv))], " "), e.ExitCode, msg)
}

// lastLines returns the last n non-empty lines of s joined by "; ": lvm2
// prints its reason last, after warnings.
func lastLines(s string, n int) string {
	var lines []string
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			lines = append(lines, line)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// Run executes lvm with args and returns its standard output. Every
// command runs in its own process group, so a Ctrl-C meant for opsctl does
// not interrupt lvm2 half-way through a metadata update (opsctl stops
// after the step instead), and so that a report that does not answer is
// killed with whatever it started. A report ends with ctx or after
// ReportTimeout; a change is never abandoned.
func (r *Runner) Run(ctx context.Context, args ...string) ([]byte, error) {
	return r.run(ctx, "lvm2", append([]string{r.Executable()}, args...), isReport(args))
}

// RunDmsetup executes dmsetup with args, as Run does lvm: `dmsetup status`
// is a report (it ends with ctx or after ReportTimeout), `dmsetup message`
// a change.
func (r *Runner) RunDmsetup(ctx context.Context, args ...string) ([]byte, error) {
	report := len(args) > 0 && (args[0] == "status" || args[0] == "table" || args[0] == "info")
	return r.run(ctx, "dmsetup", append([]string{r.DmsetupExecutable()}, args...), report)
}

func (r *Runner) run(ctx context.Context, tool string, argv []string, report bool) ([]byte, error) {
	if r != nil && r.Logger != nil {
		r.Logger.Debug("exec", "argv", ShellQuote(argv))
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LVM_SUPPRESS_FD_WARNINGS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return nil, &NotFoundError{Path: argv[0], OnPath: !strings.Contains(argv[0], "/"), Tool: tool}
		}
		return nil, fmt.Errorf("run %s: %w", argv[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	if report {
		timeout := time.NewTimer(r.reportTimeout())
		defer timeout.Stop()
		select {
		case err = <-done:
		case <-ctx.Done():
			killGroup(cmd.Process.Pid, done)
			return nil, fmt.Errorf("%s: %w", strings.Join(argv[:2], " "), ctx.Err())
		case <-timeout.C:
			killGroup(cmd.Process.Pid, done)
			return nil, &TimeoutError{Argv: argv, After: r.reportTimeout()}
		}
	} else {
		err = <-done
	}
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return stdout.Bytes(), &CommandError{Argv: argv, ExitCode: exitErr.ExitCode(), Stderr: stderr.String()}
		}
		return nil, fmt.Errorf("run %s: %w", argv[0], err)
	}
	return stdout.Bytes(), nil
}

// killGroup kills the process group of an lvm2 command, whose leader is
// pid: lvm2 and anything it started that still holds its output open. It
// waits a little for the leader to be reaped.
func killGroup(pid int, done <-chan error) {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(killWait):
	}
}

func isReport(args []string) bool {
	if len(args) == 0 {
		return false
	}
	switch args[0] {
	case "lvs", "pvs", "vgs", "version", "fullreport":
		return true
	}
	return false
}

// Report runs an lvm2 report command (lvs, pvs, vgs) with JSON output in
// bytes and parses it.
func (r *Runner) Report(ctx context.Context, command string, args ...string) (Report, error) {
	full := append([]string{command}, reportArgs...)
	full = append(full, args...)
	out, err := r.Run(ctx, full...)
	if err != nil {
		return nil, err
	}
	return ParseReport(out)
}

// ShellQuote renders argv as a POSIX shell command line that runs it.
func ShellQuote(argv []string) string {
	quoted := make([]string, len(argv))
	for i, arg := range argv {
		quoted[i] = shellQuoteArg(arg)
	}
	return strings.Join(quoted, " ")
}

func shellQuoteArg(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("@%+=:,./-_", c)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
