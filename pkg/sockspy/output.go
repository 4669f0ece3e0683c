package sockspy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/inputerr"
	"github.com/opsctl/opsctl/internal/sockfile"
)

// Output is the file a capture is written to, opened by OpenOutput.
type Output struct {
	*os.File
	path    string
	dir     *sockfile.Dir // the folder OpenOutput opened the file in; nil for a descriptor
	info    sockfile.Info
	regular bool
}

// Streaming reports whether the output is read live (a FIFO or a pipe):
// then every packet is flushed at once.
func (o *Output) Streaming() bool { return o.info.Mode&unix.S_IFMT == unix.S_IFIFO }

// OpenOutput opens the capture file at path for writing. opsctl runs as
// root and path may be in a folder another user owns, who could put a link
// to any file or folder on the way: so the folder is opened once,
// following only the symbolic links that nobody but root can change (see
// sockfile.OpenDir), the file is opened relative to it, never followed
// when it is a symbolic link, and only a regular file is truncated (after
// it was opened and checked, never by O_TRUNC). Allowed:
//   - a regular file, created with mode 0600 (the capture holds
//     passwords); one that is there is replaced by a new one, unless it
//     has other hard links (never truncated: its owner, and whoever
//     opened it before, could read the capture written into it);
//   - a FIFO (a live reader such as `wireshark -k -i FIFO`), and the null
//     device;
//   - /dev/stdout, /dev/fd/N and /proc/self/fd/N, which name opsctl's own
//     descriptors: those are used as they are.
//
// Anything else (a link, a folder, a device, a socket, a missing folder, a
// folder reached through another user's link) is an *inputerr.Error
// naming the input OpenOutput.path; other errors name it too.
func OpenOutput(path string) (*Output, error) {
	if fd, ok := ownDescriptor(path); ok {
		return openDescriptor(path, fd)
	}
	name := filepath.Base(path)
	if strings.HasSuffix(path, "/") || name == "." || name == ".." || name == "/" {
		return nil, outputInputError(path, "is a folder; expected a file to write")
	}
	dir, err := sockfile.OpenDir(filepath.Dir(path))
	if err != nil {
		var folderErr *sockfile.FolderError
		if errors.As(err, &folderErr) {
			return nil, outputInputError(path, folderErr.Problem)
		}
		return nil, fmt.Errorf("OpenOutput.path %s: %w", path, err)
	}
	o, err := openOutputIn(dir, name, path)
	if err != nil {
		dir.Close()
		return nil, err
	}
	o.dir = dir
	return o, nil
}

// openOutputIn opens name in dir, as OpenOutput says.
func openOutputIn(dir *sockfile.Dir, name, path string) (*Output, error) {
	for range 8 {
		pathFD, err := dir.OpenPath(name)
		if errors.Is(err, unix.ENOENT) {
			// O_EXCL: the file is the one just made, never one that a
			// link put there meanwhile (O_EXCL does not follow links).
			fd, err := dir.Create(name, unix.O_WRONLY|unix.O_NOCTTY, 0o600)
			if errors.Is(err, unix.EEXIST) {
				continue // it appeared meanwhile: look at it again
			}
			if err != nil {
				return nil, fmt.Errorf("OpenOutput.path %s: %w", path, err)
			}
			return newOutput(path, fd)
		}
		if err != nil {
			return nil, fmt.Errorf("OpenOutput.path %s: %w", path, err)
		}
		o, err := reopen(dir, name, path, pathFD)
		unix.Close(pathFD)
		return o, err
	}
	return nil, fmt.Errorf("OpenOutput.path %s: it keeps appearing and disappearing", path)
}

// reopen checks the file pathFD (name in dir, held open) refers to, and
// opens that very file for writing, through /proc/self/fd, when it is a
// FIFO or the null device; a regular file is replaced by a new one (see
// sockfile.Dir.Replace), when it is still that file.
func reopen(dir *sockfile.Dir, name, path string, pathFD int) (*Output, error) {
	var st unix.Stat_t
	if err := unix.Fstat(pathFD, &st); err != nil {
		return nil, fmt.Errorf("OpenOutput.path %s: %w", path, err)
	}
	if err := checkOutputKind(dir, name, path, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		f, info, err := dir.Replace(name, sockfile.ID{Dev: st.Dev, Ino: st.Ino}, 0o600)
		if err != nil {
			return nil, fmt.Errorf("OpenOutput.path %s: replacing it: %w", path, err)
		}
		return &Output{File: f, path: path, info: info, regular: true}, nil
	}
	// A FIFO waits here for its reader, as when writing to it any other way.
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pathFD), unix.O_WRONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("OpenOutput.path %s: %w", path, err)
	}
	return newOutput(path, fd)
}

func newOutput(path string, fd int) (*Output, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("OpenOutput.path %s: %w", path, err)
	}
	return &Output{
		File:    os.NewFile(uintptr(fd), path),
		path:    path,
		info:    sockfile.Info{ID: sockfile.ID{Dev: st.Dev, Ino: st.Ino}, Mode: st.Mode},
		regular: st.Mode&unix.S_IFMT == unix.S_IFREG,
	}, nil
}

// outputInputError is path, which the capture cannot be written to as
// given, and why.
func outputInputError(path, problem string) error {
	return inputerr.New("OpenOutput.path", path, problem)
}

// checkOutputKind refuses what a capture must not be written into.
func checkOutputKind(dir *sockfile.Dir, name, path string, st *unix.Stat_t) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		// Another name of the same file may be anywhere, say /etc/shadow
		// linked by a user where fs.protected_hardlinks is off.
		if st.Nlink > 1 {
			return outputInputError(path, fmt.Sprintf("has %d hard links; refusing to overwrite a file that has other names: remove it or choose another name", st.Nlink))
		}
		return nil
	case unix.S_IFIFO:
		return nil
	case unix.S_IFCHR:
		if isNullDevice(st) {
			return nil
		}
		return outputInputError(path, "is a device; expected a regular file, a FIFO or -")
	case unix.S_IFBLK:
		return outputInputError(path, "is a device; expected a regular file, a FIFO or -")
	case unix.S_IFLNK:
		target, _ := dir.Readlink(name)
		return outputInputError(path, fmt.Sprintf("is a symbolic link (to %s); opsctl does not follow it: name the file itself", target))
	case unix.S_IFDIR:
		return outputInputError(path, "is a folder; expected a file to write")
	case unix.S_IFSOCK:
		return outputInputError(path, "is a socket; expected a regular file, a FIFO or -")
	}
	return outputInputError(path, "is not a regular file")
}

// isNullDevice: /dev/null's device numbers (1, 3) on Linux. Writing the
// capture there measures the proxy alone.
func isNullDevice(st *unix.Stat_t) bool {
	return unix.Major(st.Rdev) == 1 && unix.Minor(st.Rdev) == 3
}

// ownDescriptor recognises the names of opsctl's own open descriptors:
// /dev/stdout, /dev/fd/N (bash's process substitution, `>(...)`) and
// /proc/self/fd/N. They are links, but into /proc/self, which no other
// user can change.
func ownDescriptor(path string) (int, bool) {
	if path == "/dev/stdout" {
		return 1, true
	}
	for _, prefix := range []string{"/dev/fd/", "/proc/self/fd/"} {
		if rest, ok := strings.CutPrefix(path, prefix); ok {
			if n, err := strconv.Atoi(rest); err == nil && n >= 0 && strconv.Itoa(n) == rest {
				return n, true
			}
		}
	}
	return 0, false
}

// openDescriptor writes to a copy of descriptor fd, as it is: the shell
// that opened it decided on truncating or appending.
func openDescriptor(path string, fd int) (*Output, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, outputInputError(path, "not an open descriptor of opsctl")
	}
	if st.Mode&unix.S_IFMT == unix.S_IFCHR && !isNullDevice(&st) {
		return nil, outputInputError(path, "is a terminal or device; pipe the capture (| wireshark -k -i -) or redirect it to a file")
	}
	if k := st.Mode & unix.S_IFMT; k != unix.S_IFREG && k != unix.S_IFIFO && k != unix.S_IFCHR {
		return nil, outputInputError(path, fmt.Sprintf("is a %s; expected a regular file or a pipe", (sockfile.Info{Mode: st.Mode}).Kind()))
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("OpenOutput.path %s: %w", path, err)
	}
	o, err := newOutput(path, dup)
	if err != nil {
		return nil, err
	}
	o.regular = false // not opsctl's to remove
	return o, nil
}

// Discard removes a regular file OpenOutput opened, when the capture never
// started: no empty capture is left behind. The name is removed only while
// it is still that file, and the file is closed.
func (o *Output) Discard() error {
	defer o.Close() // after: open, its inode number cannot be reused
	if !o.regular || o.dir == nil {
		return nil
	}
	_, err := o.dir.RemoveIf(filepath.Base(o.path), o.info.ID)
	return err
}

// Close closes the file and the folder it was opened in.
func (o *Output) Close() error {
	err := o.File.Close()
	if o.dir != nil {
		o.dir.Close()
		o.dir = nil
	}
	return err
}
