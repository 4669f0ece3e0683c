package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// The exit codes of every opsctl command (README.md, Exit status).
const (
	ExitOK        = 0
	ExitFailure   = 1 // a failure or a negative answer
	ExitUsage     = 2
	ExitTemporary = 75 // EX_TEMPFAIL: try again later
)

// ExitError carries an explicit exit code. A nil Err means the command has
// already said what it had to say (for example "no" on stdout) and only the
// code is left to set.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// UsageError marks err as a usage error (exit 2).
func UsageError(err error) error { return &ExitError{Code: ExitUsage, Err: err} }

// Usagef formats a usage error (exit 2).
func Usagef(format string, args ...any) error {
	return UsageError(fmt.Errorf(format, args...))
}

// TemporaryError marks err as temporary (exit 75).
func TemporaryError(err error) error { return &ExitError{Code: ExitTemporary, Err: err} }

// Silent returns an error that sets the exit code without printing anything.
func Silent(code int) error { return &ExitError{Code: code} }

// Temporary is implemented by errors of the pkg/* packages that a retry
// later may cure (a server that did not answer, a lock held elsewhere).
type Temporary interface{ Temporary() bool }

// ExitCode maps an error returned by a command to the process exit code.
// It is the one place where errors become exit codes.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var exitErr *ExitError
	if errors.As(err, &exitErr) {
		return exitErr.Code
	}
	var temp Temporary
	if errors.As(err, &temp) && temp.Temporary() {
		return ExitTemporary
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return ExitTemporary
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ExitTemporary
	}
	return ExitFailure
}

// Message is the one line printed on stderr for err, or "" when the error is
// silent.
func Message(err error) string {
	var exitErr *ExitError
	if errors.As(err, &exitErr) && exitErr.Err == nil {
		return ""
	}
	return err.Error()
}
