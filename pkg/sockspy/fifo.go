package sockspy

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/inputerr"
	"github.com/opsctl/opsctl/internal/sockfile"
)

// OpenFIFO opens for writing the FIFO that Wireshark made for a capture
// (extcap's --fifo), waiting for Wireshark to open it for reading, until
// ctx ends.
//
// The extcap runs as whoever runs Wireshark, root included, and the FIFO
// is in a folder every user writes to (/tmp): so the name is never
// followed when it is a symbolic link, what it names must be a FIFO owned
// by this process's user (as one Wireshark made for it is), and the FIFO
// checked is the one opened, through its descriptor. Anything else is an
// *inputerr.Error naming OpenFIFO.path.
func OpenFIFO(ctx context.Context, path string) (*Output, error) {
	pathFD, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &inputerr.Error{Name: "OpenFIFO.path", Value: path, Problem: err.Error(), Err: err}
	}
	defer unix.Close(pathFD)
	var st unix.Stat_t
	if err := unix.Fstat(pathFD, &st); err != nil {
		return nil, fmt.Errorf("OpenFIFO.path %s: %w", path, err)
	}
	if kind := st.Mode & unix.S_IFMT; kind != unix.S_IFIFO {
		return nil, inputerr.New("OpenFIFO.path", path, fmt.Sprintf("is a %s; expected the FIFO Wireshark made for the capture", (sockfile.Info{Mode: st.Mode}).Kind()))
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return nil, inputerr.New("OpenFIFO.path", path, fmt.Sprintf("belongs to uid %d, not to uid %d that runs the capture: not a FIFO Wireshark made for it", st.Uid, euid))
	}
	fd, err := openForWriting(ctx, pathFD)
	if err != nil {
		return nil, fmt.Errorf("OpenFIFO.path %s: %w", path, err)
	}
	return newOutput(path, fd)
}

// openForWriting opens the FIFO pathFD refers to for writing, through
// /proc/self/fd (the name is not looked up again). The open waits for a
// reader; when ctx ends first, opsctl opens the FIFO for reading itself,
// which ends the wait (or spares it, when the open comes after), and
// gives up.
func openForWriting(ctx context.Context, pathFD int) (int, error) {
	proc := "/proc/self/fd/" + strconv.Itoa(pathFD)
	var mu sync.Mutex
	opened := false
	ownReader := -1
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !opened {
			// Kept open until the open for writing is done: a FIFO
			// opened for reading and closed before that open waits
			// would leave it waiting for the next reader.
			ownReader, _ = unix.Open(proc, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		}
	})
	fd, err := unix.Open(proc, unix.O_WRONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	stop()
	mu.Lock()
	opened = true
	if ownReader >= 0 {
		unix.Close(ownReader)
	}
	mu.Unlock()
	if err != nil {
		return -1, err
	}
	if ctx.Err() != nil {
		unix.Close(fd)
		return -1, ctx.Err()
	}
	return fd, nil
}
