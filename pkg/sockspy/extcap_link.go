package sockspy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/inputerr"
	"github.com/opsctl/opsctl/internal/sockfile"
)

// ExtcapLink is the symbolic link to opsctl (ExtcapLinkName) in one of
// Wireshark's extcap folders, through which Wireshark runs opsctl.
//
// It is made as root in a system folder, or in a folder another user may
// own: the folder is opened once, not through a symbolic link at its own
// name, and every step works relative to it; nothing at the link's name is
// followed or replaced unless it is opsctl's own link.
type ExtcapLink struct {
	// Dir is the extcap folder; it must exist.
	Dir string
	// Target is the opsctl binary the link leads to: an absolute path.
	Target string
}

// Path is where the link is.
func (l ExtcapLink) Path() string { return filepath.Join(l.Dir, ExtcapLinkName) }

// Install makes the link. A link of opsctl's there already (one leading to
// an opsctl) is replaced when it leads elsewhere than Target, and left
// when it leads to Target's file: installed is false then. Anything else
// at the name is left as it is and is an error. A Dir that does not exist
// or is not a folder is an *inputerr.Error naming ExtcapLink.Dir.
func (l ExtcapLink) Install() (installed bool, err error) {
	dir, err := l.openDir()
	if err != nil {
		return false, err
	}
	defer dir.Close()
	want, err := fileID(l.Target)
	if err != nil {
		return false, fmt.Errorf("ExtcapLink.Target %s: %w", l.Target, err)
	}
	existing, err := l.ours(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return false, err
	case existing.leadsTo(want):
		existing.file.Close()
		return false, nil
	default:
		// An opsctl link to another binary (moved, or gone): replaced.
		removed, err := dir.RemoveIf(ExtcapLinkName, existing.id)
		existing.file.Close()
		if err != nil || !removed {
			return false, fmt.Errorf("replacing %s (a link to %s): %w", l.Path(), existing.target, errOr(err, sockfile.ErrChanged))
		}
	}
	if err := dir.Symlink(l.Target, ExtcapLinkName); err != nil {
		return false, fmt.Errorf("linking %s to %s: %w", l.Path(), l.Target, unwrapLinkError(err))
	}
	return true, nil
}

// Remove removes the link when it is opsctl's (a symbolic link leading to
// an opsctl binary: Target's file, or a file named opsctl, or one gone).
// removed is false when there is no link; anything else at the name is
// left as it is and is an error.
func (l ExtcapLink) Remove() (removed bool, err error) {
	dir, err := l.openDir()
	if err != nil {
		return false, err
	}
	defer dir.Close()
	existing, err := l.ours(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer existing.file.Close()
	removed, err = dir.RemoveIf(ExtcapLinkName, existing.id)
	if err == nil && !removed {
		err = fmt.Errorf("%s was replaced meanwhile; left as it is", l.Path())
	}
	return removed, err
}

// openDir opens Dir, which must be a folder itself, not a link to one.
func (l ExtcapLink) openDir() (*sockfile.Dir, error) {
	dir, err := sockfile.OpenDirNoFollow(l.Dir)
	if errors.Is(err, sockfile.ErrNoFolder) {
		problem := strings.TrimSuffix(strings.TrimPrefix(err.Error(), l.Dir+" "), ": "+sockfile.ErrNoFolder.Error())
		return nil, &inputerr.Error{Name: "ExtcapLink.Dir", Value: l.Dir, Problem: problem, Err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("ExtcapLink.Dir %s: %w", l.Dir, err)
	}
	return dir, nil
}

// ownLink is opsctl's link found in the folder, held open.
type ownLink struct {
	file   *os.File    // the link itself (O_PATH)
	id     sockfile.ID // of the link itself
	target string
	leads  *sockfile.ID // the file the target is; nil when it is gone
}

func (o ownLink) leadsTo(want sockfile.ID) bool { return o.leads != nil && *o.leads == want }

// fileID is the file path leads to.
func fileID(path string) (sockfile.ID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return sockfile.ID{}, err
	}
	return sockfile.ID{Dev: st.Dev, Ino: st.Ino}, nil
}

// ours finds opsctl's link in dir: an error wrapping fs.ErrNotExist when
// the name is free, an error when something else has it.
func (l ExtcapLink) ours(dir *sockfile.Dir) (ownLink, error) {
	info, err := dir.Stat(ExtcapLinkName)
	if err != nil {
		return ownLink{}, err
	}
	if info.Mode&unix.S_IFMT != unix.S_IFLNK {
		return ownLink{}, fmt.Errorf("%s is a %s, not opsctl's link: left as it is", l.Path(), info.Kind())
	}
	file, err := dir.Open(ExtcapLinkName, info.ID)
	if err != nil {
		return ownLink{}, err
	}
	own := ownLink{file: file, id: info.ID}
	if own.target, err = dir.Readlink(ExtcapLinkName); err != nil {
		file.Close()
		return ownLink{}, err
	}
	if st, err := dir.StatTarget(ExtcapLinkName); err == nil {
		own.leads = &st.ID
	}
	target, statErr := fileID(l.Target)
	isOpsctl := filepath.Base(own.target) == "opsctl" || (statErr == nil && own.leadsTo(target))
	if !isOpsctl {
		file.Close()
		return ownLink{}, fmt.Errorf("%s is a link to %s, not to opsctl: left as it is", l.Path(), own.target)
	}
	return own, nil
}

// GlobalExtcapFolder asks tshark (the program at the path given) for
// Wireshark's global extcap folder, as `tshark -G folders` names it.
func GlobalExtcapFolder(ctx context.Context, tshark string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tshark, "-G", "folders")
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s -G folders: %w", tshark, err)
	}
	folder, ok := ParseTsharkFolders(string(out))
	if !ok {
		return "", fmt.Errorf("%s -G folders names no extcap folder", tshark)
	}
	return folder, nil
}

// ParseTsharkFolders finds the global extcap folder in the output of
// `tshark -G folders`: lines "Label:<tabs>path", the folder labelled
// "Global Extcap path" (Wireshark 4.2 and later) or "Extcap path" (4.0).
func ParseTsharkFolders(out string) (string, bool) {
	var folder string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		label, value, ok := strings.Cut(sc.Text(), ":")
		value = strings.TrimSpace(value)
		if !ok || !filepath.IsAbs(value) {
			continue
		}
		switch strings.TrimSpace(label) {
		case "Global Extcap path":
			return value, true
		case "Extcap path":
			folder = value
		}
	}
	return folder, folder != ""
}

func errOr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}
