package pygrubfix

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/sockfile"
)

// FileWrite is the planned replacement of one file, made so that whoever
// else can write in its folder cannot turn it into something else:
//
//   - the folder is opened once and everything after happens relative to
//     that descriptor, so a folder renamed or replaced by a symlink in the
//     meantime changes nothing;
//   - the file's own name is never followed: a symlink, a FIFO, a device
//     node or a folder there is refused, never replaced;
//   - the new content goes to a temporary file created with O_EXCL and
//     O_NOFOLLOW in that folder, gets its mode, owner and extended
//     attributes through its descriptor, is synced, and is renamed into
//     place with renameat2: RENAME_NOREPLACE when there was no file,
//     RENAME_EXCHANGE when there was one, after which the file taken out
//     must be the very file that was read (else it is put back);
//   - the file there, when kept, is kept by a hard link to the very file
//     that was read (FILE.orig, or FILE.orig.N when that is taken), so the
//     backup is the original itself with its mode, owner, attributes and
//     times, and no existing backup is ever overwritten.
//
// Without renameat2 (Linux before 3.15, or a file system without these
// flags) the name is checked just before a plain renameat.
type FileWrite struct {
	// Path is the file as named, for messages.
	Path string
	// Backup is where the file there now will be kept, "" when none is
	// kept (there is no file, or opsctl wrote it).
	Backup string

	dir     *os.File // the folder, opened once (not O_PATH: fsync needs it)
	name    string   // the file's name in dir
	old     *os.File // the file there now, open for reading; nil when none
	oldStat unix.Stat_t
	// noRenameat2 takes the path of kernels without renameat2 (tests).
	noRenameat2 bool
	// owned: the new file gets mode, uid and gid whatever the file there
	// had (a script that root runs must be root's).
	owned    bool
	mode     uint32
	uid, gid int
}

// setOwner makes the new file mode mode, owned by uid:gid, instead of
// keeping the mode and owner of the file it replaces.
func (w *FileWrite) setOwner(mode uint32, uid, gid int) {
	w.owned, w.mode, w.uid, w.gid = true, mode, uid, gid
}

// Exists reports whether there is a file to replace.
func (w *FileWrite) Exists() bool { return w.old != nil }

// Close releases the descriptors the plan holds.
func (w *FileWrite) Close() error {
	if w.old != nil {
		w.old.Close()
	}
	return w.dir.Close()
}

// planWriteIn plans the write of name in the folder dir, which it takes
// over. A name that is there and not a regular file (a symlink included)
// is a kindError.
func planWriteIn(dir *os.File, name, display string) (*FileWrite, error) {
	w := &FileWrite{Path: display, dir: dir, name: name}
	p, err := openPathAt(int(dir.Fd()), name, unix.O_NOFOLLOW)
	if errors.Is(err, fs.ErrNotExist) {
		return w, nil
	}
	if err != nil {
		dir.Close()
		return nil, fmt.Errorf("%s: %w", display, errors.Unwrap(err))
	}
	defer p.Close()
	f, st, err := openRegular(p, display)
	if err != nil {
		dir.Close()
		return nil, err
	}
	w.old, w.oldStat = f, st
	return w, nil
}

// planHostWrite plans the write of the host path file: its folder is
// opened following the symlinks that only root can change (the caller
// named it; see openFolder), the file itself is not followed. A missing
// folder, one reached through another user's link, or a file that is not
// regular is an InputError.
func planHostWrite(file string) (*FileWrite, error) {
	folder, name := filepath.Dir(file), filepath.Base(file)
	if strings.HasSuffix(file, "/") || name == "." || name == ".." || name == "/" {
		return nil, &InputError{Path: file, Msg: "a folder, expected a file name"}
	}
	dir, err := openFolder(folder)
	var folderErr *sockfile.FolderError
	switch {
	case errors.As(err, &folderErr):
		return nil, &InputError{Path: file, Msg: folderErr.Problem, Err: err}
	case err != nil:
		return nil, err
	}
	w, err := planWriteIn(dir, name, file)
	if err != nil {
		return nil, namedInput(file, err, "a regular file or no file")
	}
	return w, nil
}

// openFolder opens the host folder for the *at calls of a write. opsctl
// runs as root and the path may lead through folders other users own: a
// symbolic link on the way is followed only when nobody but root can
// change it (sockfile.OpenDir), else whoever owns a folder on the path
// could point it at /boot/grub or /etc. Each component is looked at
// through an O_PATH descriptor: a FIFO or a device there is refused, never
// opened. A missing folder, a file on the way, or another user's link is a
// *sockfile.FolderError.
func openFolder(folder string) (*os.File, error) {
	dir, err := sockfile.OpenDir(folder)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	return dir.Reopen(unix.O_RDONLY)
}

// planWrite plans the write of the guest path file (named display): its
// folder is resolved inside the guest.
func (g *guestRoot) planWrite(file, display string) (*FileWrite, error) {
	clean := path.Clean("/" + file)
	folder, name := path.Dir(clean), path.Base(clean)
	if clean == "/" {
		return nil, &InputError{Path: display, Msg: "the guest's root folder, expected a file name"}
	}
	p, err := g.open(folder)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &InputError{Path: display, Msg: fmt.Sprintf("folder %s does not exist in the guest %s (symbolic links are followed inside the guest)", folder, g.path), Err: err}
	}
	if err != nil {
		return nil, namedInput(display, err, "a file in the guest")
	}
	defer p.Close()
	st, err := fstat(p)
	if err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, &InputError{Path: display, Msg: fmt.Sprintf("%s is %s in the guest %s, expected a folder", folder, kindOf(st.Mode), g.path)}
	}
	dir, err := reopen(p, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	w, err := planWriteIn(dir, name, display)
	if err != nil {
		return nil, namedInput(display, err, "a regular file or no file")
	}
	return w, nil
}

// keepIfForeign makes the plan keep the file there unless one of opsctl's
// marker lines is among its first lines.
func (w *FileWrite) keepIfForeign() error {
	if w.old == nil {
		return nil
	}
	head := make([]byte, 4096)
	n, err := w.old.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return fmt.Errorf("%s: %w", w.Path, err)
	}
	if writtenByOpsctl(head[:n]) {
		return nil
	}
	return w.keepOld()
}

// keepOld makes the plan keep the file there, under the first free backup
// name.
func (w *FileWrite) keepOld() error {
	for i := range maxBackups {
		name := backupName(w.name, i)
		var st unix.Stat_t
		err := unix.Fstatat(int(w.dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.ENOENT {
			w.Backup = backupName(w.Path, i)
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", backupName(w.Path, i), err)
		}
	}
	return fmt.Errorf("%s: %d backups already, none free", w.Path, maxBackups)
}

const maxBackups = 1000

// backupName is the i-th backup name of file: FILE.orig, FILE.orig.1, ...
func backupName(file string, i int) string {
	if i == 0 {
		return file + ".orig"
	}
	return fmt.Sprintf("%s.orig.%d", file, i)
}

// Markers opsctl writes near the top of the files it owns: such a file is
// rewritten without a backup. Older opsctl releases wrote the same lines.
const (
	menuLstMarker   = "# grub-legacy menu for Xen's pygrub, written by opsctl pygrub menulst"
	kickstartMarker = "# Written by opsctl pygrub menulst --kickstart: keep /boot/grub/menu.lst"
	generatorMarker = "# Written by opsctl-pygrub-menulst for Xen's pygrub; rewritten at every"
	pluginMarker    = "# opsctl pygrub kernel-install plugin: keeps /boot/grub/grub.cfg and menu.lst"
)

// writtenByOpsctl reports whether one of the first lines of head is one of
// opsctl's markers.
func writtenByOpsctl(head []byte) bool {
	lines := bufio.NewScanner(bytes.NewReader(head))
	for i := 0; i < 3 && lines.Scan(); i++ {
		switch strings.TrimSuffix(lines.Text(), "\r") {
		case menuLstMarker, kickstartMarker, generatorMarker, grub2Marker, pluginMarker:
			return true
		}
	}
	return false
}

// Apply writes data in place of the file and returns the backup made, ""
// for none. Nothing is changed when it fails, but for a temporary file it
// could not remove.
func (w *FileWrite) Apply(data []byte) (backup string, err error) {
	dirfd := int(w.dir.Fd())
	if w.old != nil {
		if err := w.sameAsRead(w.name); err != nil {
			return "", err
		}
	}
	var kept string // the backup's name in the folder
	if w.Backup != "" {
		if kept, backup, err = w.linkBackup(); err != nil {
			return "", err
		}
	}
	undo := func() {
		if kept != "" {
			unix.Unlinkat(dirfd, kept, 0)
		}
	}
	tmp, err := w.writeTemp(data)
	if err != nil {
		undo()
		return "", err
	}
	if err := w.replace(tmp); err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		undo()
		return "", err
	}
	// The rename is done; a folder that cannot be synced loses nothing
	// but durability at a crash, which the next run repairs.
	_ = w.dir.Sync()
	return backup, nil
}

// sameAsRead checks that entry in the folder is still the file read.
func (w *FileWrite) sameAsRead(entry string) error {
	var st unix.Stat_t
	err := unix.Fstatat(int(w.dir.Fd()), entry, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case err == unix.ENOENT:
		return fmt.Errorf("%s was removed since it was read; nothing written", w.Path)
	case err != nil:
		return fmt.Errorf("%s: %w", w.Path, err)
	case st.Dev != w.oldStat.Dev || st.Ino != w.oldStat.Ino:
		return fmt.Errorf("%s was replaced (now %s) since it was read; nothing written", w.Path, kindOf(st.Mode))
	}
	return nil
}

// linkBackup links the file read under the first free backup name,
// starting with the planned one; an existing name is never replaced.
func (w *FileWrite) linkBackup() (name, display string, err error) {
	// The file itself, whatever its name has become since.
	proc := fmt.Sprintf("/proc/self/fd/%d", w.old.Fd())
	for i := range maxBackups {
		name = backupName(w.name, i)
		err := unix.Linkat(unix.AT_FDCWD, proc, int(w.dir.Fd()), name, unix.AT_SYMLINK_FOLLOW)
		if err == nil {
			return name, backupName(w.Path, i), nil
		}
		if err != unix.EEXIST {
			return "", "", fmt.Errorf("keeping %s as %s: %w", w.Path, backupName(w.Path, i), err)
		}
	}
	return "", "", fmt.Errorf("%s: %d backups already, none free", w.Path, maxBackups)
}

// writeTemp writes data to a new temporary file beside the target, with
// the target's mode, owner and extended attributes (0644 and ours for a
// new file), synced, and returns its name.
func (w *FileWrite) writeTemp(data []byte) (string, error) {
	dirfd := int(w.dir.Fd())
	base := w.name
	if len(base) > 200 {
		base = base[:200] // room for the suffix within NAME_MAX
	}
	var rnd [8]byte
	for range 100 {
		rand.Read(rnd[:])
		name := "." + base + ".opsctl-" + hex.EncodeToString(rnd[:])
		fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err == unix.EEXIST {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("%s: creating a temporary file beside it: %w", w.Path, err)
		}
		tmp := os.NewFile(uintptr(fd), name)
		if err := w.fill(tmp, data); err != nil {
			tmp.Close()
			unix.Unlinkat(dirfd, name, 0)
			return "", fmt.Errorf("%s: %w", w.Path, err)
		}
		if err := tmp.Close(); err != nil {
			unix.Unlinkat(dirfd, name, 0)
			return "", fmt.Errorf("%s: %w", w.Path, err)
		}
		return name, nil
	}
	return "", fmt.Errorf("%s: no free temporary name beside it", w.Path)
}

func (w *FileWrite) fill(tmp *os.File, data []byte) error {
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	mode := uint32(0o644)
	if w.old != nil {
		mode = w.oldStat.Mode & 0o777
		if err := unix.Fchown(int(tmp.Fd()), int(w.oldStat.Uid), int(w.oldStat.Gid)); err != nil && os.Geteuid() == 0 {
			return fmt.Errorf("keeping the owner: %w", err)
		}
		if err := copyXattrs(w.old, tmp); err != nil {
			return err
		}
	}
	if w.owned {
		mode = w.mode
		if err := unix.Fchown(int(tmp.Fd()), w.uid, w.gid); err != nil && os.Geteuid() == 0 {
			return fmt.Errorf("setting the owner: %w", err)
		}
	}
	if err := unix.Fchmod(int(tmp.Fd()), mode); err != nil {
		return fmt.Errorf("setting the mode: %w", err)
	}
	return tmp.Sync()
}

// replace renames the temporary file tmp over the target.
func (w *FileWrite) replace(tmp string) error {
	dirfd := int(w.dir.Fd())
	if w.old == nil {
		if !w.noRenameat2 {
			err := unix.Renameat2(dirfd, tmp, dirfd, w.name, unix.RENAME_NOREPLACE)
			switch {
			case err == nil:
				return nil
			case err == unix.EEXIST:
				return fmt.Errorf("%s appeared while it was written; nothing written", w.Path)
			case err != unix.ENOSYS && err != unix.EINVAL:
				return fmt.Errorf("%s: %w", w.Path, err)
			}
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, w.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != unix.ENOENT {
			return fmt.Errorf("%s appeared while it was written; nothing written", w.Path)
		}
		if err := unix.Renameat(dirfd, tmp, dirfd, w.name); err != nil {
			return fmt.Errorf("%s: %w", w.Path, err)
		}
		return nil
	}
	if !w.noRenameat2 {
		err := unix.Renameat2(dirfd, tmp, dirfd, w.name, unix.RENAME_EXCHANGE)
		if err == nil {
			// tmp now names what was at the target's name: it must be
			// the file read, or something swapped in since is put back.
			if err := w.sameAsRead(tmp); err != nil {
				unix.Renameat2(dirfd, tmp, dirfd, w.name, unix.RENAME_EXCHANGE)
				return err
			}
			unix.Unlinkat(dirfd, tmp, 0)
			return nil
		}
		if err != unix.ENOSYS && err != unix.EINVAL {
			return fmt.Errorf("%s: %w", w.Path, err)
		}
	}
	if err := w.sameAsRead(w.name); err != nil {
		return err
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, w.name); err != nil {
		return fmt.Errorf("%s: %w", w.Path, err)
	}
	return nil
}

// copyXattrs gives to the extended attributes of the file from: a file
// replaced by a new one must keep, say, its security.selinux label on a
// RHEL host, or programs confined by SELinux can no longer read it.
func copyXattrs(from, to *os.File) error {
	names, err := xattrNames(from)
	if err != nil {
		return err
	}
	for _, name := range names {
		size, err := unix.Fgetxattr(int(from.Fd()), name, nil)
		if err != nil {
			return fmt.Errorf("reading attribute %s: %w", name, err)
		}
		value := make([]byte, size)
		n, err := unix.Fgetxattr(int(from.Fd()), name, value)
		if err != nil {
			return fmt.Errorf("reading attribute %s: %w", name, err)
		}
		if err := unix.Fsetxattr(int(to.Fd()), name, value[:n], 0); err != nil {
			return fmt.Errorf("keeping attribute %s: %w", name, err)
		}
	}
	return nil
}

// xattrNames lists the extended attributes of f; none where the file
// system has no such thing.
func xattrNames(f *os.File) ([]string, error) {
	size, err := unix.Flistxattr(int(f.Fd()), nil)
	if errors.Is(err, unix.ENOTSUP) || size == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing attributes: %w", err)
	}
	buf := make([]byte, size)
	n, err := unix.Flistxattr(int(f.Fd()), buf)
	if err != nil {
		return nil, fmt.Errorf("listing attributes: %w", err)
	}
	var names []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name != "" {
			names = append(names, name)
		}
	}
	return names, nil
}
