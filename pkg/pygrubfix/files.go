package pygrubfix

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// How opsctl reads the files it is pointed at. It runs as root, and the
// files may belong to someone else: a guest's disk, a folder of another
// user. A FIFO without a writer blocks open(2) for ever, /dev/zero never
// ends, and opening some devices does something (a watchdog starts
// counting). So a file is first looked at through an O_PATH descriptor,
// which opens nothing, and only a regular file is then opened, through
// /proc/self/fd so that it is the very file that was looked at.

// Size limits of what is read whole.
const (
	// maxConfigSize bounds a boot loader config the caller names (Check of
	// a file, MenuLstFromFile): pygrub --isconfig reads all of it.
	// Configs of 50 MB were seen (a grub.cfg listing thousands of
	// snapshots) and must keep working.
	maxConfigSize = 64 << 20
	// maxParserSize bounds a pygrub script or GrubConf.py: pygrub 4.17's
	// are 37 and 15 KB.
	maxParserSize = 4 << 20
)

// InputError is a path the caller gave the package (Check's target,
// MenuLstFromRoot's root, PlanMenuLstWrite's file...) that does not exist
// or is not the kind of file wanted: the caller's mistake, not a failure
// to read or write it. It names the path, not where it came from: the
// caller says that.
type InputError struct {
	Path string
	Msg  string // what is wrong, and what was expected
	Err  error  // the system's error behind it, if any
}

func (e *InputError) Error() string { return e.Path + ": " + e.Msg }
func (e *InputError) Unwrap() error { return e.Err }

// kindError is a file that is not the kind wanted: a FIFO or a device
// where a regular file is read, a file where a folder is.
type kindError struct {
	path string
	is   string // "a FIFO"
	want string // "a regular file"
}

func (e *kindError) Error() string { return fmt.Sprintf("%s: %s, expected %s", e.path, e.is, e.want) }

// namedInput turns the error of opening a path the caller named into an
// InputError when the path is missing or of the wrong kind; want says what
// was expected ("a grub config file").
func namedInput(path string, err error, want string) error {
	var kind *kindError
	var pathErr *fs.PathError
	switch {
	case errors.As(err, &kind):
		return &InputError{Path: path, Msg: kind.is + ", expected " + want, Err: err}
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, unix.ENOTDIR):
		msg := "no such file or directory"
		if errors.As(err, &pathErr) {
			msg = pathErr.Err.Error()
		}
		return &InputError{Path: path, Msg: msg + ", expected " + want, Err: err}
	}
	return err
}

// kindOf names the type of file of mode, as messages show it.
func kindOf(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a folder"
	case unix.S_IFLNK:
		return "a symbolic link"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	}
	return fmt.Sprintf("a file of type %#o", mode&unix.S_IFMT)
}

// openPathAt opens name relative to the folder dirfd (or the working
// folder, unix.AT_FDCWD) as an O_PATH descriptor: nothing is opened for
// reading, so a FIFO or a device is safe to look at.
func openPathAt(dirfd int, name string, flags int) (*os.File, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_CLOEXEC|flags, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

func fstat(f *os.File) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return st, &fs.PathError{Op: "stat", Path: f.Name(), Err: err}
	}
	return st, nil
}

// reopen opens the file that the O_PATH descriptor f stands for, with
// flags: through /proc/self/fd, the file itself, whatever its path has
// become since.
func reopen(f *os.File, flags int) (*os.File, error) {
	proc := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	fd, err := unix.Open(proc, flags|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%s: cannot reopen it through %s: is /proc mounted?", f.Name(), proc)
		}
		return nil, &fs.PathError{Op: "open", Path: f.Name(), Err: err}
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// openRegular opens for reading the regular file of the O_PATH descriptor
// p (named name in messages), or fails without opening anything else.
func openRegular(p *os.File, name string) (*os.File, unix.Stat_t, error) {
	st, err := fstat(p)
	if err != nil {
		return nil, st, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, st, &kindError{path: name, is: kindOf(st.Mode), want: "a regular file"}
	}
	f, err := reopen(p, unix.O_RDONLY)
	return f, st, err
}

// readAll reads f, which is size bytes long, up to limit bytes. With
// truncate the rest is ignored, as pygrub ignores what lies past its
// FS_READ_MAX; otherwise a longer file is an error.
func readAll(f io.Reader, name string, size, limit int64, truncate bool) ([]byte, error) {
	if size > limit && !truncate {
		return nil, tooLarge(name, size, limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(data)) > limit {
		if !truncate {
			return nil, tooLarge(name, int64(len(data)), limit) // it grew while read
		}
		data = data[:limit]
	}
	return data, nil
}

func tooLarge(name string, size, limit int64) error {
	return fmt.Errorf("%s: %d bytes, more than %d MiB (the most opsctl reads of such a file)", name, size, limit>>20)
}

// readHostFile reads the regular file at path (symlinks followed), of at
// most limit bytes (with truncate, its first limit bytes).
func readHostFile(path string, limit int64, truncate bool) ([]byte, error) {
	p, err := openPathAt(unix.AT_FDCWD, path, 0)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	f, st, err := openRegular(p, path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAll(f, path, st.Size, limit, truncate)
}

// statHostFile checks that path (symlinks followed) is a regular file.
func statHostFile(path string) error {
	p, err := openPathAt(unix.AT_FDCWD, path, 0)
	if err != nil {
		return err
	}
	defer p.Close()
	st, err := fstat(p)
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return &kindError{path: path, is: kindOf(st.Mode), want: "a regular file"}
	}
	return nil
}
