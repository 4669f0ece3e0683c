package pygrubfix

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/inputerr"
)

// Where PlanInstall writes in the guest. pygrub 4.17 searches
// /boot/grub/grub.cfg (/grub/grub.cfg on a /boot file system of its own)
// before /boot/grub2/grub.cfg, and pygrub 4.1 reads /boot/grub/menu.lst
// (/grub/menu.lst) before anything else, so these two files are what each
// reads first, in either layout. Neither is a file grub2 of EL8/EL9 reads:
// the guest's own /boot/grub2/grub.cfg and its entries stay as they are.
const (
	installFolder = "/boot/grub"
	Grub2File     = "/boot/grub/grub.cfg"
	MenuLstFile   = "/boot/grub/menu.lst"
)

// Install is the plan PlanInstall makes: the files that make pygrub 4.17
// and 4.1 boot what grub itself boots.
type Install struct {
	Root string
	// Menu is what the files hold.
	Menu  *MenuLst
	Files []*InstallFile
	g     *guestRoot
}

// InstallFile is one file of the plan.
type InstallFile struct {
	// Path is the file in the guest, HostPath where it is on this host.
	Path, HostPath string
	// For says who reads it ("pygrub 4.17").
	For  string
	Text string
	// Mode is the mode it gets: that of the file there, or 0644 for a new
	// file; the plugin is always 0755 and root's.
	Mode uint32
	// CreateFolder is the guest folder created for it, "" when it exists.
	CreateFolder string
	// Backup is where the file there is kept ("" for none: no file, or
	// opsctl's own).
	Backup string

	write *FileWrite
	owned bool
}

// PlanInstall plans writing into the guest at root the files pygrub reads
// first: for a BLS guest (EL8, EL9) /boot/grub/grub.cfg for pygrub 4.17 and
// /boot/grub/menu.lst for pygrub 4.1, both booting the entry grub would
// boot; for an EL7 guest (grub.cfg with menuentries, which pygrub 4.17
// reads itself) /boot/grub/menu.lst for pygrub 4.1. With hook it also
// installs the kernel-install plugin that rewrites them at every kernel
// update (BLS guests only): hook for a guest without BLS entries is an
// *inputerr.Error of PlanInstall.hook. A root that is missing or not a
// folder is an InputError; /boot/grub is created when missing (the one folder it makes,
// inside the guest's /boot). Nothing is written until Apply.
func PlanInstall(root string, hook bool) (*Install, error) {
	g, err := openGuestRoot(root)
	if err != nil {
		return nil, err
	}
	p := &Install{Root: root, g: g}
	if err := p.plan(hook); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *Install) plan(hook bool) error {
	m, err := menuLstFromGuest(p.g)
	if err != nil {
		return err
	}
	p.Menu = m
	legacy, err := m.Text()
	if err != nil {
		return err
	}
	if m.bls == nil {
		if hook {
			return fmt.Errorf("in the guest %s: %w", p.Root, inputerr.New("PlanInstall.hook", "", "no Boot Loader Spec entries (an EL7-style guest installs kernels through new-kernel-pkg, not kernel-install): keep its menu.lst current with the KickstartPost %post section instead"))
		}
		return p.add(MenuLstFile, "pygrub 4.1", legacy, false)
	}
	grub2, err := m.Grub2Text()
	if err != nil {
		return err
	}
	if err := p.add(Grub2File, "pygrub 4.17", grub2, false); err != nil {
		return err
	}
	if err := p.add(MenuLstFile, "pygrub 4.1", legacy, false); err != nil {
		return err
	}
	if hook {
		return p.add(PluginPath, "kernel-install", PluginScript(), true)
	}
	return nil
}

// add plans one file. Its folder must exist in the guest, but for
// /boot/grub, which is created inside an existing /boot.
func (p *Install) add(file, reader, text string, owned bool) error {
	f := &InstallFile{Path: file, HostPath: filepath.Join(p.Root, file), For: reader, Text: text, Mode: 0o644, owned: owned}
	if owned {
		f.Mode = 0o755
	}
	folder := path.Dir(file)
	if !p.g.exists(folder) {
		if folder != installFolder {
			return fmt.Errorf("in the guest %s: there is no %s (does the guest install kernels through kernel-install?)", p.Root, folder)
		}
		if err := p.g.isFolder(path.Dir(folder)); err != nil {
			return fmt.Errorf("in the guest %s: %w", p.Root, err)
		}
		f.CreateFolder = folder
		p.Files = append(p.Files, f)
		return nil
	}
	w, err := p.g.planWrite(file, f.HostPath)
	if err != nil {
		return guestContent(err)
	}
	if err := w.keepIfForeign(); err != nil {
		w.Close()
		return err
	}
	if w.Exists() && !owned {
		f.Mode = w.oldStat.Mode & 0o777
	}
	f.write, f.Backup = w, w.Backup
	p.Files = append(p.Files, f)
	return nil
}

// guestContent words a file of the guest that is not what Install can
// replace (a symlink, a FIFO, a folder): the user named the guest's root,
// which is fine; its content is not (exit 1, not a usage error).
func guestContent(err error) error {
	var in *InputError
	if errors.As(err, &in) {
		return fmt.Errorf("%s: %s; nothing written there", in.Path, in.Msg)
	}
	return err
}

// isFolder checks that the guest path p is a folder.
func (g *guestRoot) isFolder(p string) error {
	f, err := g.open(p)
	if err != nil {
		return fmt.Errorf("%s: %w", p, errors.Unwrap(err))
	}
	defer f.Close()
	st, err := fstat(f)
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s is %s, expected a folder", p, kindOf(st.Mode))
	}
	return nil
}

// Apply writes the files in order. Each is written atomically; a failure
// leaves the files before it written and the others as they were.
func (p *Install) Apply() error {
	for _, f := range p.Files {
		if f.CreateFolder != "" {
			if err := p.g.mkdir(f.CreateFolder); err != nil {
				return err
			}
			w, err := p.g.planWrite(f.Path, f.HostPath)
			if err != nil {
				return guestContent(err)
			}
			// Made a moment ago by opsctl, but a file may have appeared.
			if err := w.keepIfForeign(); err != nil {
				w.Close()
				return err
			}
			f.write = w
		}
		if f.owned {
			f.write.setOwner(0o755, 0, 0)
		}
		backup, err := f.write.Apply([]byte(f.Text))
		if err != nil {
			return err
		}
		f.Backup = backup
	}
	return nil
}

// mkdir makes the guest folder p (mode 0755) in its parent, resolved in
// the guest; mkdirat never follows a symlink at the name. A folder that
// is there already is fine; anything else there is an error.
func (g *guestRoot) mkdir(p string) error {
	parent, err := g.open(path.Dir(p))
	if err != nil {
		return fmt.Errorf("in the guest %s: %w", g.path, err)
	}
	defer parent.Close()
	dir, err := reopen(parent, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer dir.Close()
	err = unix.Mkdirat(int(dir.Fd()), path.Base(p), 0o755)
	if err == unix.EEXIST {
		if err := g.isFolder(p); err != nil {
			return fmt.Errorf("in the guest %s: %s is there but leads to no folder in the guest (symbolic links are followed inside the guest): %w; nothing written there", g.path, p, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("in the guest %s: creating %s: %w", g.path, p, err)
	}
	// The mode is 0755 whatever the umask, set through a descriptor of
	// the folder itself (O_NOFOLLOW: never a symlink swapped in since).
	fd, err := unix.Openat(int(dir.Fd()), path.Base(p), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("in the guest %s: %s: %w", g.path, p, err)
	}
	defer unix.Close(fd)
	if err := unix.Fchmod(fd, 0o755); err != nil {
		return fmt.Errorf("in the guest %s: %s: %w", g.path, p, err)
	}
	return nil
}

// Close releases the descriptors the plan holds.
func (p *Install) Close() error {
	for _, f := range p.Files {
		if f.write != nil {
			f.write.Close()
		}
	}
	return p.g.Close()
}
