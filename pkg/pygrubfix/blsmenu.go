package pygrubfix

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// maxBLSEntries bounds the entry files read from a guest: EL keeps a few
// kernels (installonly_limit=3); thousands of files are not a boot menu.
const maxBLSEntries = 1000

// maxBLSEntrySize bounds one entry file. An entry is a few lines (EL9's
// options line is a few hundred bytes); read up to pygrub's 1 MiB each,
// 999 hard links to one 1 MiB file (1 MiB of the guest's disk) made a
// check on the host take 2.5 GB of memory.
const maxBLSEntrySize = 64 << 10

// BLSMenu is the boot menu grub makes of a Boot Loader Spec guest.
type BLSMenu struct {
	// Config is the guest's grub.cfg that runs blscfg; Dir the entries
	// folder blscfg reads (guest paths).
	Config string
	Dir    string
	// Boots are the menu entries, newest first; Skipped the ids of entry
	// files that make none (no linux key, or an efi one).
	Boots   []BLSBoot
	Skipped []string
	// Default is the index in Boots grub boots; SavedEntry is the value
	// of grub's default variable it comes from ("" when unset).
	Default    int
	SavedEntry string
	// BootPrefix is the guest folder the entries' paths are relative to:
	// "/boot" when /boot is a file system of its own, else "".
	BootPrefix string
}

// findBLSConfig is the guest's grub config that runs blscfg, among the
// grub2 configs pygrub 4.17 searches; opsctl's own grub.cfg is skipped.
// It returns "" when the guest is no BLS guest.
func findBLSConfig(g *guestRoot) (string, []byte) {
	for _, c := range Xen417.Search {
		if c.Parser != ParserGrub2 || !g.exists(c.Path) {
			continue
		}
		data, err := g.readFile(c.Path)
		if err != nil || writtenByOpsctl(head(data)) || !usesBLS(data) {
			continue
		}
		return c.Path, data
	}
	return "", nil
}

func head(data []byte) []byte {
	if len(data) > 4096 {
		return data[:4096]
	}
	return data
}

// readBLSMenu reads the entries of the BLS guest g whose config (at the
// guest path config) is cfg, with the variables grub has when it runs
// blscfg: grubenv beside the real grub.cfg, then grub.cfg's own sets.
func readBLSMenu(g *guestRoot, config string, cfg []byte) (*BLSMenu, error) {
	m := &BLSMenu{Config: config}
	if g.separateBoot() {
		m.BootPrefix = "/boot"
	}
	envData, err := g.readFile(g.realDir(config) + "/grubenv")
	var grubenv map[string]string
	haveGrubenv := false
	if err == nil {
		grubenv, haveGrubenv = ParseGrubenv(envData)
	}
	env, err := grubCfgEnv(cfg, grubenv, haveGrubenv)
	if err != nil {
		return nil, fmt.Errorf("in the guest %s: %s: %w", g.path, config, err)
	}

	// blscfg reads /loader/entries of the boot file system and, when that
	// folder cannot be read, /boot/loader/entries.
	var names []string
	for _, dir := range []string{m.BootPrefix + "/loader/entries", m.BootPrefix + "/boot/loader/entries"} {
		names, err = g.listDir(dir, maxBLSEntries)
		if err == nil {
			m.Dir = dir
			break
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("in the guest %s: %w", g.path, err)
		}
	}
	if m.Dir == "" {
		return nil, fmt.Errorf("in the guest %s: %s runs blscfg but there is no %s/loader/entries folder", g.path, config, m.BootPrefix)
	}
	var entries []*BLSEntry
	for _, name := range sortedNames(names) {
		if _, ok := blsEntryName(name); !ok {
			continue
		}
		data, err := g.readFileLimit(m.Dir+"/"+name, maxBLSEntrySize)
		var tooLarge *tooLargeError
		if errors.As(err, &tooLarge) {
			return nil, fmt.Errorf("in the guest %s: %w: a Boot Loader Spec entry is a few lines", g.path, err)
		}
		if err != nil {
			// A FIFO, a device or a dangling link is no entry.
			m.Skipped = append(m.Skipped, strings.TrimSuffix(name, ".conf"))
			continue
		}
		e, _ := ParseBLSEntry(name, data)
		entries = append(entries, e)
	}
	boots, skipped, err := blsBoots(sortBLS(entries), env)
	if err != nil {
		return nil, fmt.Errorf("in the guest %s: %s: %w", g.path, m.Dir, err)
	}
	m.Boots, m.Skipped = boots, append(m.Skipped, skipped...)
	saved, isSet := env["default"]
	m.SavedEntry = saved
	m.Default = grubDefaultIndex(boots, saved, isSet)
	return m, nil
}

// listDir lists the names in the guest folder p, at most limit of them
// (more is an error).
func (g *guestRoot) listDir(p string, limit int) ([]string, error) {
	pathFD, err := g.open(p)
	if err != nil {
		return nil, err
	}
	defer pathFD.Close()
	st, err := fstat(pathFD)
	if err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, &fs.PathError{Op: "open", Path: p, Err: unix.ENOTDIR}
	}
	dir, err := reopen(pathFD, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	names, err := dir.Readdirnames(limit + 1)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if len(names) > limit {
		return nil, fmt.Errorf("%s: more than %d files, more than a boot menu holds", p, limit)
	}
	return names, nil
}

// MenuLst makes of the BLS menu the entries pygrub can boot: one kernel
// and at most one initrd (pygrub loads a single initrd file). Entries it
// cannot boot are left out and named in Dropped; when that is the default
// one, it fails.
func (m *BLSMenu) MenuLst() (*MenuLst, error) {
	out := &MenuLst{Source: fmt.Sprintf("%s (blscfg: %s/*.conf)", m.Config, m.Dir), bls: m}
	for i, b := range m.Boots {
		why := ""
		switch {
		case len(b.Initrds) > 1:
			why = fmt.Sprintf("%d initrd files (%s): pygrub loads one", len(b.Initrds), strings.Join(b.Initrds, " "))
		case strings.ContainsAny(b.Title+b.Kernel+b.Args+strings.Join(b.Initrds, ""), "\n\r"):
			why = "a line break in its title, kernel or options"
		}
		if why != "" {
			if i == m.Default {
				return nil, fmt.Errorf("%s/%s.conf, the entry grub boots, has %s", m.Dir, b.ID, why)
			}
			out.Dropped = append(out.Dropped, b.ID+": "+why)
			continue
		}
		if i == m.Default {
			out.Default = len(out.Entries)
		}
		// pygrub strips titles; blscfg keeps trailing blanks.
		e := Entry{Title: strings.Trim(b.Title, " \t"), Kernel: b.Kernel, Args: b.Args, HasKernel: true}
		if len(b.Initrds) == 1 {
			e.Initrd, e.HasInitrd = b.Initrds[0], true
		}
		out.Entries = append(out.Entries, e)
	}
	if len(out.Entries) == 0 {
		return nil, fmt.Errorf("%s: no entry with a kernel in %s", m.Config, m.Dir)
	}
	return out, nil
}

// grub2Marker heads the grub.cfg opsctl writes for pygrub 4.17.
const grub2Marker = "# grub2 menu for Xen's pygrub, written by opsctl pygrub menulst"

// Grub2Text renders the entries as a grub2 config that pygrub 4.17 reads
// (it searches /boot/grub/grub.cfg before the guest's /boot/grub2/grub.cfg):
// one menuentry each with linux and initrd, the default as a number. It
// reads back through pygrub 4.17's grub2 parser to the same entries and
// default, or Grub2Text fails.
func (m *MenuLst) Grub2Text() (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%s", grub2Marker, m.sourceLines())
	fmt.Fprintf(&b, "set default=%d\nset timeout=5\n", m.Default)
	titles := make([]string, len(m.Entries))
	for i, e := range m.Entries {
		titles[i] = grub2Title(e.Title)
		quote := "'"
		if strings.Contains(titles[i], "'") {
			quote = `"`
		}
		fmt.Fprintf(&b, "menuentry %s%s%s {\n", quote, titles[i], quote)
		fmt.Fprintf(&b, "\tlinux %s\n", e.kernelLine())
		if e.HasInitrd && e.Initrd != "" {
			fmt.Fprintf(&b, "\tinitrd %s\n", e.Initrd)
		}
		b.WriteString("}\n")
	}
	text := b.String()
	if err := m.readsBack("grub.cfg", text, ParserGrub2, Xen417, titles); err != nil {
		return "", err
	}
	return text, nil
}

// grub2Title is a title as pygrub 4.17's menuentry regex reads it back:
// its non-greedy (.*?) ends the title at the first quote followed by a
// space, so a title holding one loses its quotes.
func grub2Title(title string) string {
	if strings.Contains(title, "' ") || strings.Contains(title, `" `) {
		return strings.NewReplacer("'", "", `"`, "").Replace(title)
	}
	return title
}

// sourceLines is the comment under the marker of a generated file.
func (m *MenuLst) sourceLines() string {
	src := strings.Map(dropControl, m.Source)
	if m.bls != nil {
		return "# from " + src + ".\n# Rewritten at kernel updates by the kernel-install plugin (opsctl pygrub menulst --install-hook).\n"
	}
	return "# from " + src + ". Rewrite it after kernel updates (see opsctl pygrub menulst --kickstart).\n"
}

// blsProblem words what pygrub cannot do with a BLS guest and its fix.
func (m *BLSMenu) describe() string {
	ids := make([]string, 0, len(m.Boots))
	for _, b := range m.Boots {
		ids = append(ids, b.ID+".conf")
	}
	what := fmt.Sprintf("%d Boot Loader Spec entries in %s (%s)", len(m.Boots), m.Dir, blsIDs(ids))
	if len(m.Boots) == 0 {
		return fmt.Sprintf("no usable Boot Loader Spec entry in %s", m.Dir)
	}
	b := m.Boots[m.Default]
	return fmt.Sprintf("%s; grub boots %q (%s)", what, b.Title, path.Join(m.BootPrefix, b.Kernel))
}
