package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// The rule for a file or folder named on the command line, a flag's value
// or an argument (README, "Exit status"):
//
//   - it does not exist, or it is not the kind the command needs (a folder
//     where a file is wanted, a device, FIFO or symbolic link where a regular
//     file is, the parent folder of a file to write missing): usage error,
//     exit 2, one line naming the flag or argument;
//   - it is there but cannot be read or written (permission, I/O, corrupt
//     content): failure, exit 1.
//
// NeedFile, NeedDir and NeedParentDir check a path before the command
// starts; PathError classifies the error of an open, read or write, so a
// command that opens with its own care (O_NOFOLLOW, openat2) gets the same
// exit codes without checking twice.

// ErrWrongKind is wrapped by the errors of a path that exists but is not
// the kind of file expected.
var ErrWrongKind = errors.New("not the kind of file expected")

// WrongKindError is a path that is Kind ("a FIFO") where Want ("a regular
// file") was expected.
type WrongKindError struct {
	Path string
	Kind string
	Want string
}

func (e *WrongKindError) Error() string {
	return fmt.Sprintf("%s is %s, expected %s", e.Path, e.Kind, e.Want)
}

func (e *WrongKindError) Is(target error) bool { return target == ErrWrongKind }

// PathError names the flag or argument (name: "--grub-cfg", "PATH") in err,
// the error of opening, checking, reading or writing its path, and makes it
// a usage error when the path is missing or not the kind expected. A nil
// err stays nil.
func PathError(name string, err error) error {
	if err == nil {
		return nil
	}
	err = fmt.Errorf("%s: %w", name, err)
	if IsMissingOrWrongKind(err) {
		return UsageError(err)
	}
	return err
}

// IsMissingOrWrongKind reports whether err says a path does not exist or is
// not the kind expected: ENOENT, ENOTDIR (a file where a folder is in the
// path), EISDIR, ELOOP (a symbolic link opened with O_NOFOLLOW) or
// ErrWrongKind.
func IsMissingOrWrongKind(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrWrongKind) ||
		errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.ELOOP)
}

// NeedFile checks that path, given as name, is a regular file (a symbolic
// link to one is followed: this is for files opsctl reads).
func NeedFile(name, path string) error {
	return need(name, path, "a file", func(m fs.FileMode) bool { return m.IsRegular() }, "a regular file")
}

// NeedDir checks that path, given as name, is a folder.
func NeedDir(name, path string) error {
	return need(name, path, "a folder", fs.FileMode.IsDir, "a folder")
}

// NeedParentDir checks that the folder a file is to be written in, given
// as name, exists: opsctl never creates the folders above what it writes.
func NeedParentDir(name, path string) error {
	parent := filepath.Dir(path)
	info, err := os.Stat(parent)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Usagef("%s %s: folder %s does not exist", name, path, parent)
	case err != nil:
		return fmt.Errorf("%s %s: %w", name, path, err)
	case !info.IsDir():
		return Usagef("%s %s: %s is %s, expected a folder", name, path, parent, KindOf(info.Mode()))
	}
	return nil
}

func need(name, path, missingWant string, ok func(fs.FileMode) bool, want string) error {
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return Usagef("%s %s: does not exist, expected %s", name, path, missingWant)
	case err != nil:
		return fmt.Errorf("%s %s: %w", name, path, err)
	case !ok(info.Mode()):
		return UsageError(fmt.Errorf("%s %s: %s, expected %s", name, path, KindOf(info.Mode()), want))
	}
	return nil
}

// KindOf names the kind of file at mode ("a FIFO", "a folder"), for
// messages and WrongKindError.
func KindOf(mode fs.FileMode) string {
	switch {
	case mode.IsDir():
		return "a folder"
	case mode.IsRegular():
		return "a regular file"
	case mode&fs.ModeSymlink != 0:
		return "a symbolic link"
	case mode&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case mode&fs.ModeSocket != 0:
		return "a socket"
	case mode&fs.ModeCharDevice != 0:
		return "a character device"
	case mode&fs.ModeDevice != 0:
		return "a block device"
	}
	return "not a regular file"
}
