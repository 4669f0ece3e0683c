package lvmcache

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/sockfile"
)

// TextfileName is the file of the metrics in a folder of node_exporter's
// textfile collector, which reads every *.prom file there.
const TextfileName = "opsctl_lvm_cache.prom"

// WriteTextfile replaces the file name in the folder dir with data, as
// root may write into a folder another user owns (node_exporter's textfile
// folder often belongs to its user): the folder is opened once, without
// following a symbolic link in its place, and everything else happens
// relative to it (a symbolic link on the way is followed only when
// nobody but root can change it); the data goes to a new hidden file (".name.RANDOM.tmp",
// which the collector skips), mode 0644 set on the descriptor, synced, and
// then takes name's place atomically, so that a reader sees the old file or
// the new one, never a torn one. Whatever is at name is replaced only if it
// is a regular file: a symbolic link, FIFO, device or folder there stays as
// it was, and the write fails. dir missing, not a folder or a symbolic link
// is a *TextfileDirError wrapping ENOENT, ENOTDIR or ELOOP.
// CheckTextfileDir reports what WriteTextfile would say of dir itself
// (missing, not a folder, a link on the way), so that a command can refuse
// a wrong folder before it reads the metrics. The write checks again.
func CheckTextfileDir(dir string) error {
	dirFD, err := openTextfileDir(dir)
	if err != nil {
		return err
	}
	return unix.Close(dirFD)
}

func WriteTextfile(dir, name string, data []byte) error {
	dirFD, err := openTextfileDir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(dirFD)
	tmp, ino, err := writeTemp(dirFD, dir, name, data)
	if err != nil {
		return err
	}
	if err := replaceRegular(dirFD, tmp, name); err != nil {
		removeOwn(dirFD, tmp, ino)
		return fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
	}
	if err := unix.Fsync(dirFD); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// TextfileDirError is a textfile folder that cannot be written in: Err is
// ENOENT (missing), ENOTDIR (not a folder) or ELOOP (a symbolic link), or
// what else opening it answered.
type TextfileDirError struct {
	Dir  string
	What string
	Err  error
}

func (e *TextfileDirError) Error() string { return e.Dir + ": " + e.What }
func (e *TextfileDirError) Unwrap() error { return e.Err }

// openTextfileDir opens dir for writing in it. The path is walked one
// component at a time (sockfile.OpenDirNoFollow): the collector's user
// often owns a folder on the way, and a symbolic link of theirs there
// would otherwise lead root's file into any folder (/etc/cron.d); such a
// link, and a link as dir itself, is refused.
func openTextfileDir(dir string) (int, error) {
	d, err := sockfile.OpenDirNoFollow(dir)
	if err != nil {
		return -1, textfileDirError(dir, err)
	}
	defer d.Close()
	f, err := d.Reopen(unix.O_RDONLY)
	if err != nil {
		return -1, &TextfileDirError{Dir: dir, What: err.Error(), Err: err}
	}
	// The descriptor outlives f, which must not close it.
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return -1, &TextfileDirError{Dir: dir, What: err.Error(), Err: err}
	}
	unix.CloseOnExec(fd)
	return fd, nil
}

// textfileDirError says why dir could not be opened as a folder.
func textfileDirError(dir string, err error) error {
	var folderErr *sockfile.FolderError
	var st unix.Stat_t
	switch {
	case errors.Is(err, unix.ENOENT):
		return &TextfileDirError{Dir: dir, What: "no such folder", Err: unix.ENOENT}
	case errors.Is(err, unix.ENOTDIR) && unix.Lstat(dir, &st) == nil:
		return &TextfileDirError{Dir: dir, What: fileKind(st.Mode) + ", expected a folder", Err: unix.ENOTDIR}
	case errors.As(err, &folderErr) && unix.Lstat(dir, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return &TextfileDirError{Dir: dir, What: "a symbolic link; give the folder itself", Err: unix.ELOOP}
	case errors.As(err, &folderErr):
		// A link on the way that another user may change.
		return &TextfileDirError{Dir: dir, What: strings.TrimPrefix(folderErr.Problem, dir+" "), Err: unix.ELOOP}
	}
	return &TextfileDirError{Dir: dir, What: err.Error(), Err: err}
}

// removeOwn removes tmp if it is still the file opsctl wrote (inode ino):
// after a failed exchange another process may have put something else
// under that name, which is not opsctl's to remove.
func removeOwn(dirFD int, tmp string, ino uint64) {
	var st unix.Stat_t
	if unix.Fstatat(dirFD, tmp, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Ino == ino && st.Mode&unix.S_IFMT == unix.S_IFREG {
		_ = unix.Unlinkat(dirFD, tmp, 0)
	}
}

// writeTemp writes data to a new file beside name and returns its name
// and inode.
func writeTemp(dirFD int, dir, name string, data []byte) (string, uint64, error) {
	var random [8]byte
	if _, err := rand.Read(random[:]); err != nil {
		return "", 0, err
	}
	tmp := "." + name + "." + hex.EncodeToString(random[:]) + ".tmp"
	fd, err := unix.Openat(dirFD, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return "", 0, &os.PathError{Op: "create", Path: filepath.Join(dir, tmp), Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		_ = unix.Unlinkat(dirFD, tmp, 0)
		return "", 0, err
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir, tmp))
	_, err = f.Write(data)
	if err == nil {
		// Readable by the collector's user; the umask has no say.
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		removeOwn(dirFD, tmp, st.Ino)
		return "", 0, err
	}
	return tmp, st.Ino, nil
}

// replaceRegular puts tmp in name's place. The old name is swapped out
// (RENAME_EXCHANGE) and looked at only then, so that nothing can be put
// there between a look and the rename: a regular file is removed, anything
// else is swapped back in place. Where there is no old name, the rename
// does not replace one that appears meanwhile (RENAME_NOREPLACE).
func replaceRegular(dirFD int, tmp, name string) error {
	for range 8 {
		err := unix.Renameat2(dirFD, tmp, dirFD, name, unix.RENAME_EXCHANGE)
		if errors.Is(err, unix.ENOENT) {
			err = unix.Renameat2(dirFD, tmp, dirFD, name, unix.RENAME_NOREPLACE)
			if errors.Is(err, unix.EEXIST) {
				continue // appeared since: exchange with it
			}
			return err
		}
		if err != nil {
			return err
		}
		// tmp now names what was at name.
		var st unix.Stat_t
		if err := unix.Fstatat(dirFD, tmp, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			return unix.Unlinkat(dirFD, tmp, 0)
		}
		if err := unix.Renameat2(dirFD, tmp, dirFD, name, unix.RENAME_EXCHANGE); err != nil {
			return fmt.Errorf("found %s there and could not put it back (it is now %s): %w", fileKind(st.Mode), tmp, err)
		}
		return fmt.Errorf("%s there, not a file opsctl wrote; remove it", fileKind(st.Mode))
	}
	return errors.New("another process keeps creating it")
}
