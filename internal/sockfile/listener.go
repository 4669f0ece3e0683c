package sockfile

import (
	"errors"
	"io/fs"
	"net"
	"path/filepath"
	"sync"
)

// Listener is a stream socket listening at a path of the file system,
// made by Listen. Close removes the socket file, only while it is still
// the listener's.
type Listener struct {
	*net.UnixListener
	path string
	dir  *Dir
	name string
	id   ID

	closeOnce sync.Once
	closeErr  error
}

// Listen makes a stream socket listening at path with the given
// permission bits (exactly: the umask does not apply), owned by whoever
// runs opsctl. A socket at path that nobody serves (left by a crash) is
// replaced; a served one, or any other file, is an error wrapping ErrInUse
// or ErrNotSocket. A path clients could not connect to wraps ErrTooLong, a
// missing folder ErrNoFolder.
func Listen(path string, mode fs.FileMode) (*Listener, error) {
	if err := CheckPath(path); err != nil {
		return nil, err
	}
	dir, err := OpenDir(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	name := filepath.Base(path)
	sock, err := dir.Bind(name, Options{Mode: mode, ReplaceStale: true})
	if err != nil {
		dir.Close()
		return nil, err
	}
	ln, err := sock.Listener()
	if err != nil {
		dir.RemoveIf(name, sock.Info.ID)
		sock.File.Close()
		dir.Close()
		return nil, err
	}
	return &Listener{UnixListener: ln, path: path, dir: dir, name: name, id: sock.Info.ID}, nil
}

// Addr is the path the listener was asked for (the socket itself was bound
// under another name and moved there).
func (l *Listener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// Close removes the socket file when it is still the listener's (a daemon
// started since may have replaced it), then closes the socket. Later calls
// return the first one's result.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		_, removeErr := l.dir.RemoveIf(l.name, l.id)
		l.closeErr = errors.Join(removeErr, l.UnixListener.Close(), l.dir.Close())
	})
	return l.closeErr
}
