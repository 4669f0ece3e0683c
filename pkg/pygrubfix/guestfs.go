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
)

// guestRoot is a guest's file system unpacked in a host folder. Paths are
// resolved as inside the guest: an absolute symlink such as
// /etc/grub2.cfg -> /boot/grub2/grub.cfg stays inside the folder, as it
// does for pygrub reading the disk.
type guestRoot string

const maxSymlinks = 40

// resolve returns the host path of the guest path p, following symlinks
// within the root. A missing final component is not an error: its host
// path is returned with fs.ErrNotExist.
func (g guestRoot) resolve(p string) (string, error) {
	rest := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
	cur := "/" // guest path resolved so far
	links := 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		if name == "" || name == "." {
			continue
		}
		if name == ".." {
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, name)
		host := filepath.Join(string(g), filepath.FromSlash(next))
		fi, err := os.Lstat(host)
		if err != nil {
			return host, err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxSymlinks {
			return host, fmt.Errorf("%s: too many levels of symbolic links", next)
		}
		target, err := os.Readlink(host)
		if err != nil {
			return host, err
		}
		if strings.HasPrefix(target, "/") {
			cur = "/"
		}
		rest = append(strings.Split(strings.Trim(target, "/"), "/"), rest...)
	}
	return filepath.Join(string(g), filepath.FromSlash(cur)), nil
}

// realDir is the guest folder that really holds the guest path p, its
// symlinks followed: grub2 keeps grubenv beside the real grub.cfg, not
// beside a link to it such as /boot/grub/grub.cfg -> ../grub2/grub.cfg.
func (g guestRoot) realDir(p string) string {
	if host, err := g.resolve(p); err == nil {
		if rel, err := filepath.Rel(filepath.Clean(string(g)), host); err == nil && !strings.HasPrefix(rel, "..") {
			return path.Dir("/" + filepath.ToSlash(rel))
		}
	}
	return path.Dir(p)
}

// exists reports whether the guest path p exists.
func (g guestRoot) exists(p string) bool {
	host, err := g.resolve(p)
	if err != nil {
		return false
	}
	_, err = os.Stat(host)
	return err == nil
}

// readFile reads the first MiB of the guest path p, as much as pygrub
// reads of a config (FS_READ_MAX). The guest's content is not trusted: a
// FIFO or a device node (a symlink to /dev/zero lands on the guest's own
// /dev) is refused rather than read forever.
func (g guestRoot) readFile(p string) ([]byte, error) {
	host, err := g.resolve(p)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(host)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", p)
	}
	f, err := os.Open(host)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, fsReadMax))
}

// bootFSType is the file system type /boot (or, without its own line, /)
// has in the guest's /etc/fstab, "" when unknown.
func (g guestRoot) bootFSType() string {
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
func (g guestRoot) separateBoot() bool {
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
