package pygrubfix

import (
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

// guestRoot is a guest's file system unpacked in a host folder. Paths are
// resolved as inside the guest, as chroot(2) would: an absolute symlink
// such as /etc/grub2.cfg -> /boot/grub2/grub.cfg, or a ".." at the top,
// stays inside the folder, as it does for pygrub reading the disk. The
// guest's content is not trusted: no symlink leads out of the folder, and
// only regular files are read.
type guestRoot struct {
	path string   // the folder as named, for messages
	dir  *os.File // the folder, held open (O_PATH): every path is resolved under it
	// noOpenat2 makes the walk the only resolver, as on kernels before
	// 5.6 (tests).
	noOpenat2 bool
}

const maxSymlinks = 40

// openGuestRoot opens the guest's root folder path (the caller named it:
// a symlink on the way is followed when nobody but root can change it, see
// sockfile.OpenDir; a guest tree another user owns, or links to, could
// otherwise be the host's /). A path that is missing, not a folder, or
// reached through another user's link is an InputError.
func openGuestRoot(path string) (*guestRoot, error) {
	folder, err := sockfile.OpenDir(path)
	var folderErr *sockfile.FolderError
	switch {
	case errors.As(err, &folderErr) && folderErr.Err != nil:
		return nil, &InputError{Path: path, Msg: folderErr.Err.Error() + ", expected a folder (the guest's root)", Err: err}
	case errors.As(err, &folderErr):
		return nil, &InputError{Path: path, Msg: folderErr.Problem, Err: err}
	case err != nil:
		return nil, err
	}
	defer folder.Close()
	dir, err := folder.Reopen(unix.O_PATH)
	if err != nil {
		return nil, err
	}
	return &guestRoot{path: path, dir: dir}, nil
}

func (g *guestRoot) Close() error { return g.dir.Close() }

// open resolves the guest path p inside the guest and returns an O_PATH
// descriptor of what it names, symlinks followed (inside the guest).
func (g *guestRoot) open(p string) (*os.File, error) {
	if !g.noOpenat2 {
		how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
		// The kernel answers EAGAIN when a rename or mount raced with a
		// ".." of the walk; a few tries are enough unless someone keeps
		// renaming on purpose.
		for range 128 {
			fd, err := unix.Openat2(int(g.dir.Fd()), p, how)
			switch {
			case err == nil:
				return os.NewFile(uintptr(fd), p), nil
			case err == unix.EAGAIN:
				continue
			case err == unix.ENOSYS || err == unix.EPERM:
				// No openat2 (Linux before 5.6, as on the Xen 4.1 hosts
				// this package is for) or a seccomp filter that does not
				// know it: walk.
				return g.walk(p)
			}
			return nil, &fs.PathError{Op: "open", Path: p, Err: err}
		}
		return nil, &fs.PathError{Op: "open", Path: p, Err: unix.EAGAIN}
	}
	return g.walk(p)
}

// walk is open done one component at a time, each relative to the folder
// before it and never following a symlink by itself: a symlink's target is
// read and walked in its place, from the guest's root when absolute, and
// ".." goes back to the folder walked before, never above the root.
func (g *guestRoot) walk(p string) (*os.File, error) {
	fail := func(err error) (*os.File, error) { return nil, &fs.PathError{Op: "open", Path: p, Err: err} }
	// folders[0] is the root (not ours to close); the others are closed
	// when walked back over, or at the end.
	folders := []*os.File{g.dir}
	defer func() {
		for _, f := range folders[1:] {
			f.Close()
		}
	}()
	switch {
	case p == "":
		return fail(unix.ENOENT) // as open("") does
	case strings.IndexByte(p, 0) >= 0:
		return fail(unix.EINVAL) // no C string holds it
	}
	rest := splitPath(p)
	links := 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(folders) > 1 {
				folders[len(folders)-1].Close()
				folders = folders[:len(folders)-1]
			}
			continue
		}
		f, err := openPathAt(int(folders[len(folders)-1].Fd()), name, unix.O_NOFOLLOW)
		if err != nil {
			return fail(errors.Unwrap(err))
		}
		st, err := fstat(f)
		if err != nil {
			f.Close()
			return fail(errors.Unwrap(err))
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			target, err := readlinkFD(f)
			f.Close()
			if err != nil {
				return fail(err)
			}
			if links++; links > maxSymlinks {
				return fail(unix.ELOOP)
			}
			if path.IsAbs(target) {
				for _, f := range folders[1:] {
					f.Close()
				}
				folders = folders[:1]
			}
			rest = append(splitPath(target), rest...)
			continue
		}
		if len(rest) > 0 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			f.Close()
			return fail(unix.ENOTDIR)
		}
		folders = append(folders, f)
	}
	last := folders[len(folders)-1]
	if len(folders) == 1 {
		// p is the root itself: a descriptor of our own.
		return openPathAt(int(g.dir.Fd()), ".", 0)
	}
	folders = folders[:len(folders)-1]
	return last, nil
}

func splitPath(p string) []string { return strings.Split(p, "/") }

// readlinkFD reads the target of the symlink of the O_PATH descriptor f.
func readlinkFD(f *os.File) (string, error) {
	for size := 256; size <= 1<<16; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(int(f.Fd()), "", buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
	return "", unix.ENAMETOOLONG
}

// hostPath is the path of the O_PATH descriptor f as the kernel sees it.
func hostPath(f *os.File) (string, error) {
	return os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
}

// realDir is the guest folder that really holds the guest path p, its
// symlinks followed: grub2 keeps grubenv beside the real grub.cfg, not
// beside a link to it such as /boot/grub/grub.cfg -> ../grub2/grub.cfg.
func (g *guestRoot) realDir(p string) string {
	f, err := g.open(p)
	if err != nil {
		return path.Dir(p)
	}
	defer f.Close()
	root, err1 := hostPath(g.dir)
	real, err2 := hostPath(f)
	if err1 != nil || err2 != nil {
		return path.Dir(p)
	}
	rel, err := filepath.Rel(root, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return path.Dir(p)
	}
	return path.Dir("/" + filepath.ToSlash(rel))
}

// exists reports whether the guest path p exists.
func (g *guestRoot) exists(p string) bool {
	f, err := g.open(p)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// readFile reads the first MiB of the guest path p, as much as pygrub
// reads of a config (FS_READ_MAX). A FIFO or a device node (a symlink to
// /dev/zero lands on the guest's own /dev) is refused, never opened.
func (g *guestRoot) readFile(p string) ([]byte, error) {
	f, st, err := g.openRegular(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAll(f, p, st.Size, fsReadMax, true)
}

// openRegular opens the guest path p for reading when it is a regular
// file: a FIFO or device node is refused, never opened.
func (g *guestRoot) openRegular(p string) (*os.File, unix.Stat_t, error) {
	pathFD, err := g.open(p)
	if err != nil {
		return nil, unix.Stat_t{}, err
	}
	defer pathFD.Close()
	return openRegular(pathFD, p)
}

// readFileLimit reads the guest path p, a regular file of at most limit
// bytes; a larger one is a *tooLargeError, refused before it is read.
func (g *guestRoot) readFileLimit(p string, limit int64) ([]byte, error) {
	f, st, err := g.openRegular(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st.Size > limit {
		return nil, &tooLargeError{path: p, size: st.Size, limit: limit}
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if int64(len(data)) > limit {
		return nil, &tooLargeError{path: p, size: int64(len(data)), limit: limit} // it grew while read
	}
	return data, nil
}

// tooLargeError is a guest file larger than opsctl reads of its kind.
type tooLargeError struct {
	path        string
	size, limit int64
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("%s: %d bytes, more than %d KiB", e.path, e.size, e.limit>>10)
}

// bootFSType is the file system type /boot (or, without its own line, /)
// has in the guest's /etc/fstab, "" when unknown.
func (g *guestRoot) bootFSType() string {
	data, err := g.readFile("/etc/fstab")
	if err != nil {
		return ""
	}
	types := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || strings.HasPrefix(f[0], "#") {
			continue
		}
		types[f[1]] = f[2]
	}
	if t, ok := types["/boot"]; ok {
		return t
	}
	return types["/"]
}

// separateBoot reports whether the guest's fstab mounts /boot separately.
func (g *guestRoot) separateBoot() bool {
	data, err := g.readFile("/etc/fstab")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && !strings.HasPrefix(f[0], "#") && f[1] == "/boot" {
			return true
		}
	}
	return false
}

var errNoConfig = errors.New("couldn't find bootloader config file in the image provided")
