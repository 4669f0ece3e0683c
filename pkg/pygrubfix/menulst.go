package pygrubfix

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
)

// MenuLst is a grub-legacy menu.lst written from a guest's grub2 config,
// for a pygrub that cannot read grub2 (Xen 4.1).
type MenuLst struct {
	// Source is the grub2 config it was made from.
	Source  string
	Default int
	Entries []Entry
	// Dropped names the entries left out (BLS entries pygrub cannot boot).
	Dropped []string
	// bls is the BLS menu it was made from, nil for a grub2 menu.
	bls *BLSMenu
}

// BLS is the Boot Loader Spec menu the entries come from, nil when they
// come from grub.cfg's menuentries.
func (m *MenuLst) BLS() *BLSMenu { return m.bls }

// MenuLstFromRoot reads the grub2 config of the guest root folder (where
// pygrub 4.17 would find it) and its grubenv; for a guest whose grub.cfg
// runs blscfg (EL8, EL9), the Boot Loader Spec entries as grub reads them.
// A root that is missing or not a folder is an InputError.
func MenuLstFromRoot(root string) (*MenuLst, error) {
	g, err := openGuestRoot(root)
	if err != nil {
		return nil, err
	}
	defer g.Close()
	return menuLstFromGuest(g)
}

func menuLstFromGuest(g *guestRoot) (*MenuLst, error) {
	root := g.path
	if config, data := findBLSConfig(g); config != "" {
		bls, err := readBLSMenu(g, config, data)
		if err != nil {
			return nil, err
		}
		m, err := bls.MenuLst()
		if err != nil {
			return nil, fmt.Errorf("in the guest %s: %w", root, err)
		}
		return m, nil
	}
	for _, c := range Xen417.Search {
		if c.Parser != ParserGrub2 || !g.exists(c.Path) {
			continue
		}
		data, err := g.readFile(c.Path)
		if err != nil {
			return nil, fmt.Errorf("in the guest %s: %w", root, err) // err names the file
		}
		env, _ := g.readFile(g.realDir(c.Path) + "/grubenv")
		return newMenuLst(c.Path, data, env)
	}
	return nil, fmt.Errorf("%s: no grub2 config (looked for /boot/grub/grub.cfg, /grub/grub.cfg, /boot/grub2/grub.cfg, /grub2/grub.cfg)", root)
}

// MenuLstFromFile reads a grub2 config file and the grubenv beside it (beside
// the file a symlink such as /etc/grub2.cfg points to). A file that is
// missing or not a regular file is an InputError; one over 64 MiB an error.
func MenuLstFromFile(file string) (*MenuLst, error) {
	data, err := readHostFile(file, maxConfigSize, false)
	if err != nil {
		return nil, namedInput(file, err, "a grub config file")
	}
	// grubenv is beside the real grub.cfg. Only relative links are
	// followed: an absolute one in a mounted guest (/boot/grub2/grub.cfg)
	// would lead to the host's grubenv.
	real := file
	for range maxSymlinks {
		link, err := os.Readlink(real)
		if err != nil || filepath.IsAbs(link) {
			break
		}
		real = filepath.Join(filepath.Dir(real), link)
	}
	// As much of it as pygrub would read; a grubenv that is not a regular
	// file is as good as none.
	env, _ := readHostFile(filepath.Join(filepath.Dir(real), "grubenv"), fsReadMax, true)
	if usesBLS(data) {
		return nil, fmt.Errorf("%s runs blscfg: its entries are Boot Loader Spec files in the guest's /boot/loader/entries, which a grub config file alone does not have; use MenuLstFromRoot with the guest's root folder", file)
	}
	return newMenuLst(file, data, env)
}

func newMenuLst(source string, data, grubenv []byte) (*MenuLst, error) {
	cfg, err := Parse(data, ParserGrub2, Xen417, FromImage)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	m := &MenuLst{Source: source}
	index := map[int]int{} // grub2 entry -> menu.lst entry
	for i, e := range cfg.Entries {
		if !e.HasKernel || e.Kernel == "" || strings.ContainsAny(e.Title+e.Kernel+e.Initrd+e.Args, "\n\r") {
			continue
		}
		index[i] = len(m.Entries)
		m.Entries = append(m.Entries, e)
	}
	if len(m.Entries) == 0 {
		return nil, fmt.Errorf("%s: no entry with a kernel", source)
	}
	def := cfg.Default
	// grubenv counts only when the config boots ${saved_entry}: with a
	// fixed default (GRUB_DEFAULT=0) grub2 ignores a saved_entry left by
	// the installer or an old grub2-set-default.
	if saved := savedEntry(grubenv); saved != "" && cfg.defaultSaved {
		if n, err := strconv.Atoi(saved); err == nil {
			def = n
		} else {
			leaf := saved[strings.LastIndexByte(saved, '>')+1:]
			for i, e := range cfg.Entries {
				if e.Title == leaf {
					def = i
					break
				}
			}
		}
	}
	m.Default = index[def] // an entry without kernel or out of range: 0
	return m, nil
}

// savedEntry is saved_entry of a grubenv block.
func savedEntry(grubenv []byte) string {
	for _, line := range strings.Split(string(grubenv), "\n") {
		if v, ok := strings.CutPrefix(line, "saved_entry="); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// legacyRoot turns a grub2 device ("hd0,msdos1", "hd0,gpt2") into the
// grub-legacy one ("(hd0,0)"); partitions count from 0 there.
func legacyRoot(root string) string {
	disk, part, ok := strings.Cut(strings.Trim(root, "()"), ",")
	if !ok || !strings.HasPrefix(disk, "hd") {
		return ""
	}
	part = strings.TrimPrefix(strings.TrimPrefix(part, "msdos"), "gpt")
	n, err := strconv.Atoi(part)
	if err != nil || n < 1 {
		return ""
	}
	return fmt.Sprintf("(%s,%d)", disk, n-1)
}

// Text renders the menu.lst. It reads back through pygrub's grub-legacy
// parser (as in Xen 4.1) to the same entries, or Text fails.
func (m *MenuLst) Text() (string, error) {
	var b strings.Builder
	// The source's name is the user's, a control character in it would end
	// the comment.
	fmt.Fprintf(&b, "%s\n%s", menuLstMarker, m.sourceLines())
	fmt.Fprintf(&b, "default=%d\ntimeout=5\n", m.Default)
	for _, e := range m.Entries {
		fmt.Fprintf(&b, "title %s\n", e.Title)
		if r := legacyRoot(e.Root); r != "" {
			fmt.Fprintf(&b, "\troot %s\n", r)
		}
		fmt.Fprintf(&b, "\tkernel %s\n", e.kernelLine())
		if e.HasInitrd && e.Initrd != "" {
			fmt.Fprintf(&b, "\tinitrd %s\n", e.Initrd)
		}
	}
	text := b.String()
	titles := make([]string, len(m.Entries))
	for i, e := range m.Entries {
		titles[i] = e.Title
	}
	if err := m.readsBack("menu.lst", text, ParserLegacy, Xen41, titles); err != nil {
		return "", err
	}
	return text, nil
}

// readsBack checks that text, the file what ("menu.lst") written from m,
// reads through pygrub's parser of rel to m's entries, with the titles
// titles (as that pygrub shows them), and to m's default: what opsctl
// writes for pygrub is what pygrub will boot.
func (m *MenuLst) readsBack(what, text string, parser Parser, rel *Release, titles []string) error {
	back, err := Parse([]byte(text), parser, rel, FromImage)
	if err != nil {
		return fmt.Errorf("%s from %s does not read back: %w", what, m.Source, err)
	}
	if len(back.Entries) != len(m.Entries) || back.Default != m.Default {
		return fmt.Errorf("%s from %s reads back as %d entries (default %d), want %d (default %d)", what, m.Source, len(back.Entries), back.Default, len(m.Entries), m.Default)
	}
	for i, e := range back.Entries {
		w := m.Entries[i]
		if e.Title != titles[i] || e.Kernel != w.Kernel || e.Args != w.Args || e.Initrd != w.Initrd {
			return fmt.Errorf("%s from %s: entry %d %q reads back as %+v", what, m.Source, i, w.Title, e)
		}
	}
	return nil
}

// PlanMenuLstWrite plans writing menu.lst (or a kickstart section) to
// file. With a root, file must be inside the guest's root folder root and
// is resolved as in the guest (symlinks interpreted inside it); without,
// it is a host path. A file outside root, in a folder that does not exist,
// or that is not a regular file (a symlink, a FIFO, a device) is an
// InputError. A file there that opsctl did not write is kept as
// FILE.orig, or FILE.orig.N when that name is taken.
func PlanMenuLstWrite(root, file string) (*FileWrite, error) {
	var w *FileWrite
	var err error
	if root == "" {
		w, err = planHostWrite(file)
	} else {
		w, err = planGuestWrite(root, file)
	}
	if err != nil {
		return nil, err
	}
	if err := w.keepIfForeign(); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// planGuestWrite plans the write of file, a host path inside the guest
// root folder root.
func planGuestWrite(root, file string) (*FileWrite, error) {
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	absFile, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(absRoot, absFile)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, &InputError{Path: file, Msg: fmt.Sprintf("not inside the guest root %s (menu.lst is written into the guest)", root)}
	}
	g, err := openGuestRoot(root)
	if err != nil {
		return nil, err
	}
	defer g.Close()
	return g.planWrite(filepath.ToSlash(rel), file)
}

// dropControl drops control characters (strings.Map).
func dropControl(r rune) rune {
	if unicode.IsControl(r) {
		return -1
	}
	return r
}
