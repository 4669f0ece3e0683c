package lvmcache

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The state dir holds what opsctl, running as root, trusts when it resumes
// a resize: the journal names the lvm2 commands still to run. So it must be
// a folder nobody but root can change, reached without a symbolic link that
// someone else could point elsewhere: systemd, for one, makes
// /var/lib/NAME a link to /var/lib/private/NAME, owned by a service's
// dynamic user, for a unit with DynamicUser=yes and StateDirectory=NAME.
// Every file in it is then opened relative to the folder's descriptor and
// without following a link, and only a regular file is ever read, replaced
// or removed.

// ErrNoStateDir is wrapped by the error of a state dir that does not exist.
var ErrNoStateDir = errors.New("no such folder")

// StateDirError is a state dir that opsctl refuses to keep journals in:
// Path is the folder or link on the way to it that is the problem.
type StateDirError struct {
	StateDir string
	Path     string
	Problem  string
	Err      error
}

func (e *StateDirError) Error() string {
	where := e.StateDir
	if e.Path != e.StateDir {
		where += ": " + e.Path
	}
	return fmt.Sprintf("state dir %s %s", where, e.Problem)
}

func (e *StateDirError) Unwrap() error { return e.Err }

// maxJournalBytes bounds what a journal read may be: one is about 2 KiB.
const maxJournalBytes = 64 << 10

// stateDir is the open state folder.
type stateDir struct {
	dir  *os.File
	path string
}

func (d *stateDir) fd() int { return int(d.dir.Fd()) }

func (d *stateDir) Close() error { return d.dir.Close() }

// openStateDir opens path, checking every folder on the way. With create,
// missing folders are made: the state dir itself 0700, its parents 0755;
// without it a missing folder is ErrNoStateDir.
func openStateDir(path string, create bool) (*stateDir, error) {
	if !filepath.IsAbs(path) {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, &StateDirError{StateDir: path, Path: path, Problem: "cannot be made absolute", Err: err}
		}
		path = abs
	}
	path = filepath.Clean(path)
	fd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &StateDirError{StateDir: path, Path: "/", Problem: "cannot be opened: " + err.Error(), Err: err}
	}
	if err := checkStateFolder(fd, path, "/", false); err != nil {
		unix.Close(fd)
		return nil, err
	}
	walked := "/"
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if path == "/" {
		parts = nil
	}
	for i, part := range parts {
		last := i == len(parts)-1
		walked = filepath.Join(walked, part)
		next, err := unix.Openat(fd, part, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && create {
			mode := uint32(0o755)
			if last {
				mode = 0o700
			}
			if err := unix.Mkdirat(fd, part, mode); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(fd)
				return nil, &StateDirError{StateDir: path, Path: walked, Problem: "cannot be created: " + err.Error(), Err: err}
			}
			next, err = unix.Openat(fd, part, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err == nil {
				// The umask may have taken bits away; never adds any.
				err = unix.Fchmod(next, mode)
			}
		}
		if err != nil {
			if next >= 0 {
				unix.Close(next)
			}
			// O_NOFOLLOW|O_DIRECTORY answers ENOTDIR for a link.
			var st unix.Stat_t
			if errors.Is(err, unix.ENOTDIR) && unix.Fstatat(fd, part, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = unix.ELOOP
			}
			unix.Close(fd)
			return nil, stateFolderError(path, walked, err)
		}
		unix.Close(fd)
		fd = next
		if err := checkStateFolder(fd, path, walked, last); err != nil {
			unix.Close(fd)
			return nil, err
		}
	}
	return &stateDir{dir: os.NewFile(uintptr(fd), path), path: path}, nil
}

func stateFolderError(stateDir, path string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT):
		return &StateDirError{StateDir: stateDir, Path: path, Problem: "does not exist", Err: ErrNoStateDir}
	case errors.Is(err, unix.ELOOP):
		return &StateDirError{StateDir: stateDir, Path: path, Problem: "is a symbolic link: opsctl keeps its journals only where no link can lead them elsewhere; give the real path, on folders only root can change", Err: err}
	case errors.Is(err, unix.ENOTDIR):
		return &StateDirError{StateDir: stateDir, Path: path, Problem: "is not a folder", Err: err}
	}
	return &StateDirError{StateDir: stateDir, Path: path, Problem: "cannot be opened: " + err.Error(), Err: err}
}

// checkStateFolder refuses a folder on the way to the state dir that
// another user could change: one not owned by root (or opsctl's user), or
// writable by its group or everyone. A sticky folder (/tmp) is fine on the
// way, where nobody can rename or remove what root made in it; the state
// dir itself never.
func checkStateFolder(fd int, stateDir, path string, last bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &StateDirError{StateDir: stateDir, Path: path, Problem: "cannot be read: " + err.Error(), Err: err}
	}
	if st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return &StateDirError{StateDir: stateDir, Path: path, Problem: fmt.Sprintf("is owned by uid %d, not root: that user could change the journals; give another Manager.StateDir", st.Uid)}
	}
	if st.Mode&0o022 != 0 && (last || st.Mode&unix.S_ISVTX == 0) {
		return &StateDirError{StateDir: stateDir, Path: path, Problem: fmt.Sprintf("is writable by others (mode %04o): they could change the journals; chmod go-w it", st.Mode&0o7777)}
	}
	return nil
}

// regularAt reports whether name in the state dir is there (without
// following a link) and whether it is a regular file.
func (d *stateDir) regularAt(name string) (exists, regular bool, err error) {
	var st unix.Stat_t
	err = unix.Fstatat(d.fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("%s: %w", filepath.Join(d.path, name), err)
	}
	return true, st.Mode&unix.S_IFMT == unix.S_IFREG, nil
}

// openRegular opens name in the state dir without following a link and
// without blocking on a FIFO, and refuses anything but a regular file.
func (d *stateDir) openRegular(name string, flags int, perm uint32) (*os.File, error) {
	path := filepath.Join(d.path, name)
	fd, err := unix.Openat(d.fd(), name, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, perm)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s is a symbolic link, not a file opsctl wrote; remove it", path)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("%s is not a regular file (%s), not a file opsctl wrote; remove it", path, fileKind(st.Mode))
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

func fileKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a folder"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symbolic link"
	case unix.S_IFREG:
		return "a regular file"
	}
	return "not a file"
}

// readFile reads a regular file of the state dir, at most maxJournalBytes.
func (d *stateDir) readFile(name string) ([]byte, error) {
	f, err := d.openRegular(name, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxJournalBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if len(data) > maxJournalBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a journal opsctl wrote", f.Name(), maxJournalBytes)
	}
	return data, nil
}

// writeFile replaces name atomically and durably: a crash leaves the old
// content or the new, never a torn file. It never replaces anything but a
// regular file.
func (d *stateDir) writeFile(name string, data []byte) error {
	path := filepath.Join(d.path, name)
	if exists, regular, err := d.regularAt(name); err != nil {
		return err
	} else if exists && !regular {
		return fmt.Errorf("%s is not a regular file, not a file opsctl wrote; remove it", path)
	}
	var random [8]byte
	if _, err := rand.Read(random[:]); err != nil {
		return err
	}
	tmp := "." + name + "." + hex.EncodeToString(random[:]) + ".tmp"
	fd, err := unix.Openat(d.fd(), tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "create", Path: filepath.Join(d.path, tmp), Err: err}
	}
	f := os.NewFile(uintptr(fd), filepath.Join(d.path, tmp))
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = unix.Renameat(d.fd(), tmp, d.fd(), name)
	}
	if err != nil {
		_ = unix.Unlinkat(d.fd(), tmp, 0)
		return fmt.Errorf("%s: %w", path, err)
	}
	return d.sync()
}

// removeFile removes name, never a folder, and makes the removal durable.
// A file that is not there is no error.
func (d *stateDir) removeFile(name string) error {
	err := unix.Unlinkat(d.fd(), name, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "remove", Path: filepath.Join(d.path, name), Err: err}
	}
	return d.sync()
}

func (d *stateDir) sync() error {
	if err := unix.Fsync(d.fd()); err != nil {
		return fmt.Errorf("sync %s: %w", d.path, err)
	}
	return nil
}

// lockLV takes the LV's lock: an open-file-description lock on its lock
// file, which the kernel drops when opsctl dies. The lock file holds the
// pid of its holder, for the message of a second opsctl.
func (d *stateDir) lockLV(name Name) (unlock func(), err error) {
	f, err := d.openRegular(fileStem(name)+".lock", unix.O_RDWR|unix.O_CREAT, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	lock := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lock); err != nil {
		holder := lockHolder(f)
		f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil, &BusyError{LV: name, LockFile: f.Name(), PID: holder}
		}
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		lock.Type = unix.F_UNLCK
		_ = unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lock)
		f.Close()
	}, nil
}

// lockedBy reports whether another process holds the LV's lock right now,
// without taking it (a taken lock, however briefly, would make a second
// opsctl that starts at that moment give up).
func (d *stateDir) lockedBy(name Name) (*BusyError, error) {
	lockFile := fileStem(name) + ".lock"
	if exists, _, err := d.regularAt(lockFile); err != nil || !exists {
		return nil, err
	}
	f, err := d.openRegular(lockFile, unix.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	defer f.Close()
	probe := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &probe); err != nil {
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	if probe.Type == unix.F_UNLCK {
		return nil, nil
	}
	return &BusyError{LV: name, LockFile: f.Name(), PID: lockHolder(f)}, nil
}

// lockHolder is the pid the holder wrote into the lock file, 0 if none.
func lockHolder(f *os.File) int {
	buf := make([]byte, 16)
	n, _ := f.ReadAt(buf, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// ErrBusy is wrapped by the error of a change to an LV that another opsctl
// is changing right now.
var ErrBusy = errors.New("busy")

// BusyError is an LV whose lock another opsctl holds. It is temporary:
// trying again once that opsctl has finished works (exit 75).
type BusyError struct {
	LV       Name
	LockFile string
	// PID is the holder's process, 0 when unknown.
	PID int
}

func (e *BusyError) Error() string {
	holder := "its lock " + e.LockFile + " is held"
	if e.PID > 0 {
		holder = fmt.Sprintf("pid %d holds its lock %s", e.PID, e.LockFile)
	}
	return fmt.Sprintf("another opsctl is changing %s right now (%s); try again once it has finished", e.LV, holder)
}

func (e *BusyError) Is(target error) bool { return target == ErrBusy }
func (e *BusyError) Temporary() bool      { return true }
