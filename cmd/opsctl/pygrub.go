package main

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/inputerr"
	"github.com/opsctl/opsctl/pkg/pygrubfix"
)

// newCmdPygrub is the pygrub group: pygrub_check.go, pygrub_patch.go,
// pygrub_menulst.go and pygrub_scan.go hold its verbs; this file what they
// share (the flag names of pygrubfix's inputs, the error wording, the
// escaping of guest text).
func newCmdPygrub(f *cli.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pygrub",
		Short: "Make EL7 (grub2) and EL8/EL9 (Boot Loader Spec) guests boot under Xen's pygrub",
		Long: `Xen PV guests are booted by pygrub on the host, which reads the guest's grub
config. Old pygrub (Xen 4.1) cannot boot EL7 guests: it does not search
/boot/grub2, its menuentry regex is greedy, it does not know linux16/initrd16
and it cannot read XFS. No pygrub boots EL8/EL9 guests: their grub.cfg runs
blscfg and the entries are Boot Loader Spec files in /boot/loader/entries.
These commands find out which guests are affected and fix them: patch the
host's pygrub, or write into the guest what pygrub reads first.`,
		Example: `  opsctl pygrub scan --check
  opsctl pygrub check --xen 4.1 /mnt
  opsctl pygrub patch --dry-run
  opsctl pygrub menulst --root /mnt --install --install-hook`,
	}
	cmd.AddCommand(
		NewCmdPygrubCheck(f, nil),
		NewCmdPygrubPatch(f, nil),
		NewCmdPygrubMenuLst(f, nil),
		NewCmdPygrubScan(f, nil),
	)
	return cmd
}

// pygrubFlagNames are the flags that fill in pygrubfix's inputs: errors of
// the package name the inputs (and hint at them: "use MenuLstFromRoot",
// "the KickstartPost %post section"), the user reads the flags.
var pygrubFlagNames = map[string]string{
	"Release.Name":       "--xen",
	"ParseURI.uri":       "--connect",
	"FindParsers.pygrub": "--pygrub",
	"MenuLstFromRoot":    "--root",
	"PlanInstall.hook":   "--install-hook",
	"KickstartPost":      "--kickstart",
}

// pygrubRename shows the flags in an error of pygrubfix.
func pygrubRename(err error) error { return inputerr.Rename(err, pygrubFlagNames) }

// pygrubError words err of the command cmd ("pygrub menulst"): a path that
// is missing or not the kind wanted (pygrubfix.InputError) is a usage
// error (exit 2) naming flag, the flag that gave it ("" for an argument);
// anything else is a failure (exit 1). The inputs the package names are
// shown as their flags. Messages may quote a guest's files, so their
// control characters are escaped. A nil err stays nil.
func pygrubError(cmd, flag string, err error) error {
	if err == nil {
		return nil
	}
	err = pygrubRename(err)
	var in *pygrubfix.InputError
	if errors.As(err, &in) {
		if flag != "" {
			flag += " "
		}
		return &escapedError{cli.UsageError(fmt.Errorf("%s: %s%w", cmd, flag, err))}
	}
	return &escapedError{fmt.Errorf("%s: %w", cmd, err)}
}

// escapedError is err with the control characters of its message escaped.
type escapedError struct{ err error }

func (e *escapedError) Error() string { return escapeControls(e.err.Error()) }
func (e *escapedError) Unwrap() error { return e.err }

// escapeControls shows the control characters of s (C0 and C1, DEL, bytes
// that are not UTF-8, and the Unicode controls of text direction and line
// separation) as \xNN or \uNNNN, so that text from a guest cannot send
// escape sequences to the terminal (retitle it, clear it, fake lines).
// Backslashes are left alone: the result is for reading; JSON is for
// exact values.
func escapeControls(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unicode.IsControl(r) || reordersText(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[:size])
		}
		s = s[size:]
	}
	return b.String()
}

// reordersText reports whether r is one of the Unicode format characters
// that change the order or the lines of the text around them on a
// terminal (bidirectional overrides, isolates, marks; line and paragraph
// separators).
func reordersText(r rune) bool {
	switch {
	case r == 0x061c, r == 0x200e, r == 0x200f, r == 0x2028, r == 0x2029:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}
