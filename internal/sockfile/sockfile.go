// Package sockfile creates, replaces and removes UNIX socket files as root
// in folders that other users may write to.
//
// The owner of such a folder can rename anything over any name in it at
// any moment: a chmod, chown or unlink made through a path after bind(2)
// may land on whatever their symbolic link points at (a root-owned file
// became 0666 that way). So nothing here goes through a path twice. Each
// step works relative to a descriptor of the folder, and a socket is made
// in a private folder of opsctl's (mode 0700, inside the target's folder,
// so that a rename can move it out): bound there through
// /proc/self/fd/N/NAME, given its owner and mode there, where nobody else
// can put anything, and only then renamed into place, never over a file
// that appeared meanwhile. What must be checked before it is replaced or
// removed is first moved into such a private folder, checked there and
// moved back when it is not what was expected.
//
// Files are recognised by their device and inode numbers (ID), compared
// only while the file is held open (a listening socket, an O_PATH
// descriptor): a file system reuses the number of a freed inode at once,
// for whatever file another user makes next.
//
// Binding through the folder's descriptor also keeps sun_path short
// whatever the length of the real path.
package sockfile

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// MaxPath is the longest socket path clients can connect to: sun_path
// holds 108 bytes, and the C library, Go and curl keep one of them for the
// terminating NUL.
const MaxPath = 107

// The errors of this package, for errors.Is. Messages that wrap them name
// the folder when it matters, never the file itself: the caller does that,
// with the flag that named it.
var (
	// ErrTooLong: the path is longer than MaxPath.
	ErrTooLong = errors.New("clients could not connect to it")
	// ErrNoFolder: the folder of the path does not exist or is not a folder.
	ErrNoFolder = errors.New("no such folder")
	// ErrNotSocket: the name exists and is not a socket.
	ErrNotSocket = errors.New("not a socket")
	// ErrInUse: a socket at the name is served by a process.
	ErrInUse = errors.New("another process is serving it")
	// ErrExists: a socket nobody serves is at the name, and replacing it
	// was not asked for.
	ErrExists = errors.New("already exists")
	// ErrChanged: the file at a name changed between the check and the
	// change; it was left as it was.
	ErrChanged = errors.New("changed meanwhile")
)

// CheckPath returns an error wrapping ErrTooLong when clients could not
// connect to a socket at path.
func CheckPath(path string) error {
	if len(path) > MaxPath {
		return fmt.Errorf("%d bytes, more than the %d of a UNIX socket address: %w", len(path), MaxPath, ErrTooLong)
	}
	return nil
}

// ID identifies a file: its device and inode numbers.
type ID struct{ Dev, Ino uint64 }

// Info is what fstatat(2) says of a name, without following a link.
type Info struct {
	ID       ID
	Mode     uint32 // st_mode: the type and the permission bits
	UID, GID int
	Links    uint64
}

func infoOf(st *unix.Stat_t) Info {
	return Info{ID: ID{Dev: st.Dev, Ino: st.Ino}, Mode: st.Mode, UID: int(st.Uid), GID: int(st.Gid), Links: uint64(st.Nlink)}
}

// IsSocket reports whether the file is a socket.
func (i Info) IsSocket() bool { return i.Mode&unix.S_IFMT == unix.S_IFSOCK }

// Kind names the type of the file for messages: "regular file", "folder"...
func (i Info) Kind() string {
	switch i.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFDIR:
		return "folder"
	case unix.S_IFLNK:
		return "symbolic link"
	case unix.S_IFIFO:
		return "named pipe"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "device"
	}
	return "file of unknown type"
}

// Dir is an open folder. Its methods work relative to its descriptor, so
// that renaming the folder (or a folder above it) once it is open changes
// nothing.
type Dir struct {
	fd   int
	path string
}

// OpenDir opens the folder at path. A path that does not exist or is not a
// folder is an error wrapping ErrNoFolder, and so is a path that leads
// through a symbolic link another user can change (see openFolder).
func OpenDir(path string) (*Dir, error) { return openDirFlags(path, 0) }

// OpenDirNoFollow is OpenDir for a folder named by a path whose last
// component must not be a symbolic link: a link there is an error
// wrapping ErrNoFolder that names its target.
func OpenDirNoFollow(path string) (*Dir, error) { return openDirFlags(path, unix.O_NOFOLLOW) }

func openDirFlags(path string, flags int) (*Dir, error) {
	fd, err := openFolder(path, flags&unix.O_NOFOLLOW != 0)
	if err != nil {
		return nil, err
	}
	return &Dir{fd: fd, path: path}, nil
}

// FolderError is a folder path that opsctl does not use: missing, not a
// folder, or reached through a symbolic link that is not followed. It
// wraps ErrNoFolder, and the system's error when there is one (ENOENT,
// ENOTDIR).
type FolderError struct {
	// Problem says what is wrong, naming the path: "folder /x does not
	// exist".
	Problem string
	Err     error
}

func (e *FolderError) Error() string { return e.Problem + ": " + ErrNoFolder.Error() }
func (e *FolderError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrNoFolder}
	}
	return []error{ErrNoFolder, e.Err}
}

// maxLinks bounds the symbolic links followed in one path, as the kernel's
// ELOOP does.
const maxLinks = 40

// openFolder opens the folder at path (O_PATH), one component at a time,
// each relative to the folder before it, and follows a symbolic link on
// the way only when nobody but root and opsctl's user can have put it
// there or change it (trustedLink). opsctl runs as root and writes into
// folders other users own: a user who owns a folder on the path could
// otherwise point a link there at any folder (/etc, /root) and have root
// create or truncate a file of the name given there. With noFollow, a
// link as the last component is refused whoever owns it.
func openFolder(path string, noFollow bool) (int, error) {
	if path == "" {
		path = "."
	}
	if strings.IndexByte(path, 0) >= 0 {
		return -1, &FolderError{Problem: fmt.Sprintf("%q is not a folder", path)}
	}
	start := "."
	if filepath.IsAbs(path) {
		start = "/"
	}
	cur, err := unix.Open(start, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("folder %s: %w", path, err)
	}
	rest := strings.Split(path, "/")
	walked := strings.TrimSuffix(start, ".") // for messages: the path up to here
	links := 0
	fail := func(err error) (int, error) {
		unix.Close(cur)
		return -1, err
	}
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		if name == "" || name == "." {
			continue
		}
		next, err := unix.Openat(cur, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		switch {
		case errors.Is(err, unix.ENOENT):
			return fail(&FolderError{Problem: fmt.Sprintf("folder %s does not exist", path), Err: unix.ENOENT})
		case err != nil:
			return fail(fmt.Errorf("folder %s: %w", path, err))
		}
		var st unix.Stat_t
		if err := unix.Fstat(next, &st); err != nil {
			unix.Close(next)
			return fail(fmt.Errorf("folder %s: %w", path, err))
		}
		here := filepath.Join(walked, name)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			unix.Close(cur)
			cur, walked = next, here
			continue
		case unix.S_IFLNK:
		default:
			unix.Close(next)
			return fail(&FolderError{Problem: fmt.Sprintf("%s is not a folder", path), Err: unix.ENOTDIR})
		}
		target, err := readlinkFD(next)
		unix.Close(next)
		if err != nil {
			return fail(fmt.Errorf("folder %s: reading the link %s: %w", path, here, err))
		}
		if noFollow && allEmpty(rest) {
			return fail(&FolderError{Problem: fmt.Sprintf("%s is a symbolic link (to %s), not followed: name the folder itself", path, target)})
		}
		var folder unix.Stat_t
		if err := unix.Fstat(cur, &folder); err != nil {
			return fail(fmt.Errorf("folder %s: %w", path, err))
		}
		if !trustedLink(&folder, &st) {
			return fail(&FolderError{Problem: fmt.Sprintf("%s leads through %s, a symbolic link (to %s) that users other than root may change "+
				"(link owner %d; folder %s: owner %d, mode %04o): not followed; name the folder it leads to",
				path, here, target, st.Uid, filepath.Dir(here), folder.Uid, folder.Mode&0o7777)})
		}
		if links++; links > maxLinks {
			return fail(&FolderError{Problem: fmt.Sprintf("folder %s: more than %d symbolic links", path, maxLinks)})
		}
		if filepath.IsAbs(target) {
			root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fail(fmt.Errorf("folder %s: %w", path, err))
			}
			unix.Close(cur)
			cur, walked = root, "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return cur, nil
}

func allEmpty(names []string) bool {
	for _, n := range names {
		if n != "" && n != "." {
			return false
		}
	}
	return true
}

// trustedLink reports whether the symbolic link link, found in folder,
// was put there by root or opsctl's user and can be changed by no one
// else: the folder is theirs and no one else may write in it (but the
// root group), or it is sticky (as /tmp is), where only the link's owner
// and the folder's may rename or remove the link, and both are theirs.
func trustedLink(folder, link *unix.Stat_t) bool {
	if !ours(folder.Uid) {
		return false
	}
	if folder.Mode&0o002 == 0 && (folder.Mode&0o020 == 0 || folder.Gid == 0) {
		return true
	}
	return folder.Mode&unix.S_ISVTX != 0 && ours(link.Uid)
}

// ours: root, or the user opsctl runs as.
func ours(uid uint32) bool { return uid == 0 || int(uid) == os.Geteuid() }

// readlinkFD reads the target of the symbolic link of the O_PATH
// descriptor fd.
func readlinkFD(fd int) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// Reopen opens the folder itself again, with flags (O_RDONLY|O_DIRECTORY
// to sync it, O_PATH to resolve names under it), through /proc/self/fd:
// the path is not looked up again.
func (d *Dir) Reopen(flags int) (*os.File, error) {
	fd, err := unix.Open(procPath(d.fd), flags|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: d.path, Err: err}
	}
	return os.NewFile(uintptr(fd), d.path), nil
}

// Close closes the folder's descriptor.
func (d *Dir) Close() error { return unix.Close(d.fd) }

// Path is the path of name in the folder, for messages.
func (d *Dir) Path(name string) string { return filepath.Join(d.path, name) }

// Symlink makes name a symbolic link to target. An existing name, whatever
// it is, is an error wrapping fs.ErrExist and is left as it is.
func (d *Dir) Symlink(target, name string) error {
	if err := unix.Symlinkat(target, d.fd, name); err != nil {
		return &os.LinkError{Op: "symlink", Old: target, New: d.Path(name), Err: err}
	}
	return nil
}

// Readlink is the target of the symbolic link name.
func (d *Dir) Readlink(name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(d.fd, name, buf)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: d.Path(name), Err: err}
	}
	return string(buf[:n]), nil
}

// StatTarget describes the file name leads to, following symbolic links
// (a relative target from the folder).
func (d *Dir) StatTarget(name string) (Info, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, name, &st, 0); err != nil {
		return Info{}, &fs.PathError{Op: "stat", Path: d.Path(name), Err: err}
	}
	return infoOf(&st), nil
}

// Stat describes name without following a link. A missing name is an
// error satisfying errors.Is(err, fs.ErrNotExist).
func (d *Dir) Stat(name string) (Info, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return Info{}, &fs.PathError{Op: "stat", Path: d.Path(name), Err: err}
	}
	return infoOf(&st), nil
}

// OpenPath opens name itself (never a link's target) as an O_PATH
// descriptor. A missing name is an error satisfying errors.Is(err,
// unix.ENOENT).
func (d *Dir) OpenPath(name string) (int, error) {
	return unix.Openat(d.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

// Create makes name, a new regular file of mode perm (less the umask),
// and opens it with flags: O_CREAT|O_EXCL|O_NOFOLLOW are added, so that
// it is never a file that was there, nor one a link leads to. An existing
// name is an error satisfying errors.Is(err, unix.EEXIST).
func (d *Dir) Create(name string, flags int, perm uint32) (int, error) {
	return unix.Openat(d.fd, name, flags|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
}

// Open opens name itself (never a link's target) as an O_PATH descriptor,
// when it is still the file want. Connecting to ProcPath(f) reaches that
// socket whatever happens to its names, with a short address.
func (d *Dir) Open(name string, want ID) (*os.File, error) {
	fd, err := unix.Openat(d.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: d.Path(name), Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || infoOf(&st).ID != want {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w", d.Path(name), ErrChanged)
	}
	return os.NewFile(uintptr(fd), d.Path(name)), nil
}

// ProcPath is the name of an open file through /proc/self/fd: short, and
// bound to the file rather than to a path.
func ProcPath(f *os.File) string { return procPath(int(f.Fd())) }

func procPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// Served describes name and reports whether a socket there accepts
// clients of type typ (unix.SOCK_STREAM...), connecting to the file itself
// rather than through its name. A socket served with another type counts
// as served. A missing name is an error satisfying
// errors.Is(err, fs.ErrNotExist).
func (d *Dir) Served(name string, typ int) (Info, bool, error) {
	f, info, served, err := d.served(name, typ)
	if f != nil {
		f.Close()
	}
	return info, served, err
}

// served is Served, returning the file it opened (nil on error).
func (d *Dir) served(name string, typ int) (*os.File, Info, bool, error) {
	fd, err := unix.Openat(d.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, Info{}, false, &fs.PathError{Op: "open", Path: d.Path(name), Err: err}
	}
	f := os.NewFile(uintptr(fd), d.Path(name))
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, Info{}, false, &fs.PathError{Op: "stat", Path: d.Path(name), Err: err}
	}
	info := infoOf(&st)
	if !info.IsSocket() {
		return f, info, false, nil
	}
	served, err := connectable(procPath(fd), typ)
	if err != nil {
		f.Close()
		return nil, info, false, fmt.Errorf("probing %s: %w", d.Path(name), err)
	}
	return f, info, served, nil
}

// Served reports whether the socket file at path accepts clients of type
// typ; see Dir.Served. The path may be longer than MaxPath.
func Served(path string, typ int) (bool, error) {
	d, err := OpenDir(filepath.Dir(path))
	if err != nil {
		return false, err
	}
	defer d.Close()
	_, served, err := d.Served(filepath.Base(path), typ)
	return served, err
}

// connectable tries a non-blocking connect: a full backlog (EAGAIN) or a
// socket of another type (EPROTOTYPE) is served too; only ECONNREFUSED
// means nobody listens.
func connectable(addr string, typ int) (bool, error) {
	s, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(s)
	switch err := unix.Connect(s, &unix.SockaddrUnix{Name: addr}); {
	case err == nil, errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINPROGRESS), errors.Is(err, unix.EPROTOTYPE):
		return true, nil
	case errors.Is(err, unix.ECONNREFUSED):
		return false, nil
	default:
		return false, err
	}
}

// Owner is the owner a socket file is given.
type Owner struct{ UID, GID int }

// Options say what Bind makes.
type Options struct {
	// Type is unix.SOCK_STREAM (the default when 0), SOCK_SEQPACKET or
	// SOCK_DGRAM.
	Type int
	// Mode holds the permission bits of the file, applied exactly (the
	// umask does not apply).
	Mode fs.FileMode
	// Owner, when set, is given to the file.
	Owner *Owner
	// OwnerFailed, when set, is told when the owner could not be given
	// (not root) and decides: nil carries on with the file owned by
	// whoever runs opsctl. Unset, that is an error.
	OwnerFailed func(error) error
	// Control runs on the socket before bind(2) (SO_PASSCRED...).
	Control func(fd int) error
	// ReplaceStale replaces a socket at the name that nobody serves.
	ReplaceStale bool
	// Replace, when set, is the file the socket takes the place of,
	// atomically: clients never find the name missing. The caller keeps
	// that file reachable through another name (Link) beforehand.
	Replace *ID
}

func (o Options) sockType() int {
	if o.Type == 0 {
		return unix.SOCK_STREAM
	}
	return o.Type
}

// Socket is a bound socket whose file is in place.
type Socket struct {
	// File is the socket; see Listener and PacketConn.
	File *os.File
	// Info describes its file as it was put in place.
	Info Info
}

// Listener turns a stream or seqpacket socket into a listener (which never
// removes the file on Close). The Socket's File is closed, unless that
// fails: the caller then removes the file while it is still open.
func (s *Socket) Listener() (*net.UnixListener, error) {
	ln, err := net.FileListener(s.File)
	if err != nil {
		return nil, err
	}
	s.File.Close()
	return ln.(*net.UnixListener), nil
}

// PacketConn turns a datagram socket into a connection; see Listener.
func (s *Socket) PacketConn() (*net.UnixConn, error) {
	c, err := net.FilePacketConn(s.File)
	if err != nil {
		return nil, err
	}
	s.File.Close()
	return c.(*net.UnixConn), nil
}

// listenBacklog is what listen(2) is asked for; the kernel lowers it to
// net.core.somaxconn, which is what Go's own listeners get.
const listenBacklog = 1 << 16

// Bind makes a socket, listening unless it is a datagram socket, and puts
// its file at name with the mode and owner of opts. The file never appears
// at name with another mode or owner, and nothing at name is replaced but
// a stale socket (ReplaceStale) or the file opts.Replace names, which the
// caller holds open. Errors wrap ErrNotSocket, ErrInUse, ErrExists or
// ErrChanged when they are those.
func (d *Dir) Bind(name string, opts Options) (*Socket, error) {
	var stale *ID
	if opts.Replace == nil {
		// Held open until it is removed: its inode number cannot be
		// given to another file meanwhile.
		staleFile, info, served, err := d.served(name, opts.sockType())
		if staleFile != nil {
			defer staleFile.Close()
		}
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, err
		case !info.IsSocket():
			return nil, fmt.Errorf("exists and is not a socket (it is a %s): %w", info.Kind(), ErrNotSocket)
		case served:
			return nil, ErrInUse
		case !opts.ReplaceStale:
			return nil, ErrExists
		default:
			stale = &info.ID
		}
	}
	p, err := d.private()
	if err != nil {
		return nil, err
	}
	defer p.remove()
	file, tmp, info, err := p.bind(name, opts)
	if err != nil {
		return nil, err
	}
	if opts.Replace != nil {
		err = p.exchange(tmp, name, *opts.Replace)
	} else {
		if stale != nil {
			// A stale socket another user swapped for something else
			// since the check is left alone, and then blocks the rename.
			_, err = p.removeFromParent(name, *stale)
		}
		if err == nil {
			err = unix.Renameat2(p.fd, tmp, d.fd, name, unix.RENAME_NOREPLACE)
			if errors.Is(err, unix.EEXIST) {
				err = fmt.Errorf("another file appeared there meanwhile; it was left as it is: %w", ErrChanged)
			} else if err != nil {
				err = fmt.Errorf("moving the socket into place: %w", err)
			}
		}
	}
	if err != nil {
		file.Close()
		return nil, err
	}
	p.made = nil // in place, or exchanged and removed
	return &Socket{File: file, Info: info}, nil
}

// Replace makes a new regular file of mode perm (exactly: the umask does
// not apply), owned by whoever runs opsctl, and puts it at name in place
// of the file want, which the caller holds open, atomically; the file
// taken out is removed. It returns the new file open for writing. The
// file is made in a private folder, so that nobody else can open it
// before it has its mode, and exchanged with name (renameat2
// RENAME_EXCHANGE), never over anything but want: when name is another
// file by then, it is left there and the error wraps ErrChanged.
//
// Writing a new file rather than truncating the one there keeps what is
// written from whoever could read that one: its owner, who may make it
// readable again at any time, and whoever opened it before.
func (d *Dir) Replace(name string, want ID, perm fs.FileMode) (*os.File, Info, error) {
	p, err := d.private()
	if err != nil {
		return nil, Info{}, err
	}
	defer p.remove()
	const made = "new"
	fd, err := unix.Openat(p.fd, made, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, Info{}, fmt.Errorf("making the new %s: %w", d.Path(name), err)
	}
	p.made = append(p.made, made)
	var st unix.Stat_t
	if err := errors.Join(unix.Fchmod(fd, uint32(perm.Perm())), unix.Fstat(fd, &st)); err != nil {
		unix.Close(fd)
		return nil, Info{}, fmt.Errorf("making the new %s: %w", d.Path(name), err)
	}
	if err := p.exchange(made, name, want); err != nil {
		unix.Close(fd)
		return nil, Info{}, err
	}
	p.made = nil // in place; what was there is removed
	return os.NewFile(uintptr(fd), d.Path(name)), infoOf(&st), nil
}

// Link makes newName a second name of oldName, which must be the file
// want (held open by the caller). An existing newName is an error wrapping fs.ErrExist and is left as
// it is.
func (d *Dir) Link(oldName, newName string, want ID) error {
	// linkat(2) without AT_SYMLINK_FOLLOW links a symbolic link itself,
	// never its target.
	if err := unix.Linkat(d.fd, oldName, d.fd, newName, 0); err != nil {
		return &os.LinkError{Op: "link", Old: d.Path(oldName), New: d.Path(newName), Err: err}
	}
	got, err := d.Stat(newName)
	if err == nil && got.ID == want {
		return nil
	}
	// oldName was replaced between the caller's check and the link.
	if err == nil {
		d.RemoveIf(newName, got.ID)
	}
	return fmt.Errorf("%s: %w", d.Path(oldName), ErrChanged)
}

// RemoveIf removes name when it is still the file want (held open by the
// caller) and reports whether it did. Whatever else is at name is left
// there.
func (d *Dir) RemoveIf(name string, want ID) (bool, error) {
	p, err := d.private()
	if err != nil {
		return false, err
	}
	defer p.remove()
	return p.removeFromParent(name, want)
}

// PutBack renames from over name, atomically, and removes the file that
// was at name: from must still be the file fromID, and name the file
// nameID (both held open by the caller). Otherwise both are left as they
// were: when name changed, the error wraps ErrChanged; when from is gone
// or changed, it does not.
func (d *Dir) PutBack(from string, fromID ID, name string, nameID ID) error {
	p, err := d.private()
	if err != nil {
		return err
	}
	defer p.remove()
	const taken = "taken"
	if err := p.take(from, taken, fromID); err != nil {
		if errors.Is(err, ErrChanged) || errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s was removed or replaced; %s was left as it is", d.Path(from), d.Path(name))
		}
		return err
	}
	if err := p.exchange(taken, name, nameID); err != nil {
		if backErr := p.giveBack(taken, from); backErr != nil {
			return errors.Join(err, backErr)
		}
		return err
	}
	return nil
}

// private is a folder of opsctl's own inside a Dir: mode 0700, owned by
// opsctl's user, so that nobody else can add, rename or remove anything
// in it.
type private struct {
	parent *Dir
	name   string
	fd     int
	id     ID
	made   []string // files made in it, removed with it
	stuck  bool     // holds another user's file that could not go back
}

// privateTries bounds the attempts at a private folder: a name taken, or
// the new folder moved away by the parent's owner before it was opened.
const privateTries = 16

func (d *Dir) private() (*private, error) {
	var lastErr error
	for range privateTries {
		name := ".opsctl-" + rand.Text()[:12]
		err := unix.Mkdirat(d.fd, name, 0o700)
		if errors.Is(err, unix.EEXIST) {
			lastErr = fmt.Errorf("%s exists", d.Path(name))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("making a private folder in %s: %w", d.path, err)
		}
		fd, err := unix.Openat(d.fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			lastErr = fmt.Errorf("opening the private folder %s: %w", d.Path(name), err)
			continue
		}
		// The folder's owner may have renamed the new folder away and
		// made one of their own under its name before it was opened.
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || int(st.Uid) != os.Geteuid() || st.Mode&0o077 != 0 {
			unix.Close(fd)
			lastErr = fmt.Errorf("the private folder %s was replaced by another user's (owner %d, mode %04o)", d.Path(name), st.Uid, st.Mode&0o7777)
			continue
		}
		return &private{parent: d, name: name, fd: fd, id: infoOf(&st).ID}, nil
	}
	return nil, fmt.Errorf("making a private folder in %s, %d times: %w", d.path, privateTries, lastErr)
}

// remove removes the files made in the folder, then the folder, when its
// name in the parent is still this folder (else it was moved by the
// parent's owner, and stays wherever they put it).
func (p *private) remove() {
	defer unix.Close(p.fd)
	if p.stuck {
		// Another user's file is in here, maybe under the name of one
		// made here: nothing is removed.
		return
	}
	for _, name := range p.made {
		unix.Unlinkat(p.fd, name, 0)
	}
	if info, err := p.parent.Stat(p.name); err == nil && info.ID == p.id {
		unix.Unlinkat(p.parent.fd, p.name, unix.AT_REMOVEDIR)
	}
}

// bind makes the socket's file in the private folder, with the final mode
// and owner, and returns the socket, the file's name there and its Info.
func (p *private) bind(name string, opts Options) (*os.File, string, Info, error) {
	fd, err := unix.Socket(unix.AF_UNIX, opts.sockType()|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, "", Info{}, fmt.Errorf("socket: %w", err)
	}
	fail := func(format string, err error) (*os.File, string, Info, error) {
		unix.Close(fd)
		return nil, "", Info{}, fmt.Errorf(format, err)
	}
	// bind(2) creates the file with the socket inode's mode less the
	// umask: mode 0 keeps even processes of opsctl's own user out until
	// the file has its final mode.
	if err := unix.Fchmod(fd, 0); err != nil {
		return fail("socket: %w", err)
	}
	if opts.Control != nil {
		if err := opts.Control(fd); err != nil {
			return fail("socket: %w", err)
		}
	}
	// Keep the target's name where it fits: `ss -x` shows the bound
	// address.
	addr := procPath(p.fd) + "/" + name
	if len(addr) > MaxPath {
		name = "socket"
		addr = procPath(p.fd) + "/" + name
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: addr}); err != nil {
		return fail("bind through /proc/self/fd (is /proc mounted?): %w", err)
	}
	p.made = append(p.made, name)
	if opts.Owner != nil {
		if err := unix.Fchownat(p.fd, name, opts.Owner.UID, opts.Owner.GID, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			err = fmt.Errorf("giving the socket the owner %d:%d: %w", opts.Owner.UID, opts.Owner.GID, err)
			if opts.OwnerFailed == nil {
				return fail("%w", err)
			}
			if err := opts.OwnerFailed(err); err != nil {
				return fail("%w", err)
			}
		}
	}
	// Nobody else can put a link at name in this folder: the chmod
	// reaches the socket's file.
	if err := unix.Fchmodat(p.fd, name, uint32(opts.Mode.Perm()), 0); err != nil {
		return fail("giving the socket its mode: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(p.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fail("socket: %w", err)
	}
	if opts.sockType() != unix.SOCK_DGRAM {
		if err := unix.Listen(fd, listenBacklog); err != nil {
			return fail("listen: %w", err)
		}
	}
	return os.NewFile(uintptr(fd), addr), name, infoOf(&st), nil
}

// take moves name from the parent into the folder as as, when it is the
// file want; otherwise it is put back and the error wraps ErrChanged (or
// fs.ErrNotExist when nothing is at name).
func (p *private) take(name, as string, want ID) error {
	if err := unix.Renameat2(p.parent.fd, name, p.fd, as, unix.RENAME_NOREPLACE); err != nil {
		return &fs.PathError{Op: "rename", Path: p.parent.Path(name), Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstatat(p.fd, as, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && infoOf(&st).ID == want {
		return nil
	}
	if err := p.giveBack(as, name); err != nil {
		return err
	}
	return fmt.Errorf("%s: %w", p.parent.Path(name), ErrChanged)
}

// giveBack moves as from the folder back to name in the parent, never
// over a file that appeared there meanwhile. When it cannot, the file
// stays in the folder, which then is not removed: the error says where.
func (p *private) giveBack(as, name string) error {
	if err := unix.Renameat2(p.fd, as, p.parent.fd, name, unix.RENAME_NOREPLACE); err != nil {
		p.stuck = true
		return fmt.Errorf("%s: %w; it is now at %s", p.parent.Path(name), err, filepath.Join(p.parent.Path(p.name), as))
	}
	return nil
}

// removeFromParent removes name from the parent when it is the file want,
// by taking it into the folder first.
func (p *private) removeFromParent(name string, want ID) (bool, error) {
	const taken = "removed"
	err := p.take(name, taken, want)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, ErrChanged):
		return false, nil
	case err != nil:
		return false, err
	}
	if err := unix.Unlinkat(p.fd, taken, 0); err != nil {
		return false, fmt.Errorf("removing %s: %w", p.parent.Path(name), err)
	}
	return true, nil
}

// exchange swaps tmp of the folder with name of the parent, atomically,
// and keeps the swap when what came in is the file want, which is then
// removed from the folder. Otherwise it swaps them back: the error wraps
// ErrChanged.
func (p *private) exchange(tmp, name string, want ID) error {
	if err := unix.Renameat2(p.fd, tmp, p.parent.fd, name, unix.RENAME_EXCHANGE); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("%s: it is gone: %w", p.parent.Path(name), ErrChanged)
		}
		return fmt.Errorf("replacing %s: %w", p.parent.Path(name), err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(p.fd, tmp, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && infoOf(&st).ID == want {
		if err := unix.Unlinkat(p.fd, tmp, 0); err != nil {
			return fmt.Errorf("replacing %s: %w", p.parent.Path(name), err)
		}
		return nil
	}
	if err := unix.Renameat2(p.fd, tmp, p.parent.fd, name, unix.RENAME_EXCHANGE); err != nil {
		p.stuck = true
		return fmt.Errorf("%s was replaced meanwhile, and giving it back failed: %w; it is now at %s",
			p.parent.Path(name), err, filepath.Join(p.parent.Path(p.name), tmp))
	}
	return fmt.Errorf("%s: replaced by another file meanwhile, left as it is: %w", p.parent.Path(name), ErrChanged)
}
