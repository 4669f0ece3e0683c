// Package inputerr is the error the pkg/* packages return for an input they
// cannot use (a Config field, an argument), named in the package's own terms
// ("Config.ServerName"). The command that filled the input in from a flag
// renames it to the flag ("--server-name") before the error is printed, so
// a package never speaks of opsctl's command line and the person at the
// terminal still reads the flag they typed.
package inputerr

import "strings"

// Error is one input a package cannot use.
type Error struct {
	// Name is the input in the package's terms: "Config.Server", "Plan.Size".
	Name string
	// Value is the value as the message shows it (already quoted where a
	// string needs quoting), or "" when the message does not repeat it.
	Value string
	// Problem says what is wrong and what was expected.
	Problem string
	// Err is the cause, if any (fs.ErrNotExist for a missing file...).
	Err error
}

// New returns the error of input name, whose value (shown as value) has
// problem.
func New(name, value, problem string) *Error {
	return &Error{Name: name, Value: value, Problem: problem}
}

func (e *Error) Error() string {
	msg := e.Name
	if e.Value != "" {
		msg += " " + e.Value
	}
	return msg + ": " + e.Problem
}

func (e *Error) Unwrap() error { return e.Err }

// Rename returns err with every name of names (an input in the package's
// terms, "Config.Server") that its message repeats shown as the value (the
// flag the user typed, "--server"): in input errors, wrapped or not, and in
// hints such as "check Config.CAFile". Only whole names are replaced
// (Config.Server is not the start of Config.ServerName). nil stays nil;
// errors.Is and errors.As see through the result.
func Rename(err error, names map[string]string) error {
	if err == nil {
		return nil
	}
	return &renamed{err: err, names: names}
}

type renamed struct {
	err   error
	names map[string]string
}

func (r *renamed) Error() string { return RenameText(r.err.Error(), r.names) }

func (r *renamed) Unwrap() error { return r.err }

// RenameText is msg with the names of names shown as Rename shows them in
// an error: for a package's text that is not an error (a warning, a line
// of a dry run) but speaks of its inputs too.
func RenameText(msg string, names map[string]string) string {
	for name, shown := range names {
		msg = replaceWhole(msg, name, shown)
	}
	return msg
}

// replaceWhole replaces name in msg where it is not followed by a letter,
// digit or underscore.
func replaceWhole(msg, name, shown string) string {
	var b strings.Builder
	for {
		i := strings.Index(msg, name)
		if i < 0 {
			b.WriteString(msg)
			return b.String()
		}
		end := i + len(name)
		if end < len(msg) && isWordByte(msg[end]) {
			b.WriteString(msg[:end])
		} else {
			b.WriteString(msg[:i])
			b.WriteString(shown)
		}
		msg = msg[end:]
	}
}

func isWordByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}
