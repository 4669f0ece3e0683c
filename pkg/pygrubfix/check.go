package pygrubfix

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Report is what `opsctl pygrub check` prints: the config a pygrub release
// would use, the entries it finds, the problems and whether it would boot.
type Report struct {
	Xen      string    `json:"xen"`
	Config   string    `json:"config"`
	Parser   Parser    `json:"parser"`
	Default  int       `json:"default"`
	Entries  []Entry   `json:"entries"`
	Problems []Problem `json:"problems"`
	Bootable bool      `json:"bootable"`
}

// Problem is one reason a guest does not boot, or boots other than
// expected, with the fix in its message.
type Problem struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Problem codes.
const (
	ProblemNoConfig         = "no-config"
	ProblemParseError       = "parse-error"
	ProblemNoEntries        = "no-entries"
	ProblemNoKernel         = "no-kernel"
	ProblemKernelMissing    = "kernel-missing"
	ProblemInitrdMissing    = "initrd-missing"
	ProblemDefaultTitle     = "default-by-title"
	ProblemGrub2NotSearched = "grub2-not-searched"
	ProblemGreedyTitle      = "greedy-title"
	ProblemLinux16          = "linux16-unknown"
	ProblemSubmenu          = "submenu-unsupported"
	ProblemXFS              = "xfs-boot"
	ProblemStaleMenuLst     = "stale-menu-lst"
	ProblemBLS              = "bls-entries"
)

// The fixes, as the problems of a Report and the details of CheckGuest
// name them. A report is advice for the admin who ran opsctl, so these
// (with fixBLS) name opsctl's own commands and flags: the one place of the
// package that does, on purpose.
const (
	fixPatch   = "patch pygrub on the host (`opsctl pygrub patch`)"
	fixMenuLst = "write a grub-legacy menu.lst into the guest (`opsctl pygrub menulst`, or `--kickstart` for new installs)"
	fixStale   = "rewrite it with `opsctl pygrub menulst` and install the kernel hook (`opsctl pygrub menulst --kickstart`)"
	// fixBLSDisk is fixBLS where only a disk is known, not a mounted guest.
	fixBLSDisk = "mount its /boot and root, and run `opsctl pygrub menulst --root DIR --install` (see `opsctl pygrub check DIR`)"
	fixLink    = "link /boot/grub/grub.cfg to ../grub2/grub.cfg in the guest and " + fixPatch
	fixExt3    = "put /boot on ext3/ext4 instead of XFS (pygrub of Xen 4.1 has no XFS reader)"
)

// fixBLS is the fix of a Boot Loader Spec guest whose root folder is root.
func fixBLS(root string) string {
	return fmt.Sprintf("`opsctl pygrub menulst --root %s --install` writes %s (read first by pygrub 4.17) and %s (read first by pygrub 4.1) from the entries, booting the entry grub boots; add --install-hook to keep them current at kernel updates", root, Grub2File, MenuLstFile)
}

// Check reads the guest root folder or config file at target the way
// pygrub of rel would and reports what it finds. A target that is missing,
// or neither a folder nor a regular file, is an InputError.
func Check(target string, rel *Release) (*Report, error) {
	const want = "a grub config file or a guest root folder"
	p, err := openPathAt(unix.AT_FDCWD, target, 0)
	if err != nil {
		return nil, namedInput(target, err, want)
	}
	defer p.Close()
	st, err := fstat(p)
	if err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return checkRoot(&guestRoot{path: target, dir: p}, rel)
	}
	f, st, err := openRegular(p, target)
	if err != nil {
		return nil, namedInput(target, err, want+" (mount a disk image first, or run pygrub -l on it)")
	}
	defer f.Close()
	data, err := readAll(f, target, st.Size, maxConfigSize, false)
	if err != nil {
		return nil, err
	}
	return checkFile(target, data, rel), nil
}

// ParserForFile is the parser pygrub uses for a config at that path in
// the guest: menu.lst and grub.conf are grub-legacy, *linux.c*f extlinux,
// anything else grub2.
func ParserForFile(name string) Parser {
	switch base := strings.ToLower(path.Base(filepath.ToSlash(name))); {
	case base == "menu.lst" || base == "grub.conf":
		return ParserLegacy
	case strings.HasSuffix(base, "linux.cfg") || strings.HasSuffix(base, "linux.conf"):
		return ParserExtlinux
	}
	return ParserGrub2
}

func checkFile(name string, data []byte, rel *Release) *Report {
	p := ParserForFile(name)
	r := newReport(rel, name, p)
	cfg, err := Parse(data, p, rel, FromFile)
	r.fill(cfg, err)
	if p == ParserGrub2 && usesBLS(data) {
		r.add(ProblemBLS, fmt.Sprintf("%s runs blscfg: the boot entries are Boot Loader Spec files in the guest's /boot/loader/entries, which pygrub %s cannot read; check the guest's root folder to see them; fix: %s", name, rel.Name, fixBLS("DIR")))
		r.Bootable = false
	}
	if rel != Xen417 && p == ParserGrub2 {
		slash := filepath.ToSlash(name)
		if strings.Contains(slash, "/grub2/") || strings.HasPrefix(slash, "grub2/") {
			r.add(ProblemGrub2NotSearched, fmt.Sprintf("pygrub %s does not search /boot/grub2 or /grub2, so it would not find %s in the guest (\"couldn't find bootloader config file in the image provided\"); fix: %s, or %s", rel.Name, name, fixMenuLst, fixLink))
			r.Bootable = false
		}
		r.compareWith417(data, p, FromFile)
	}
	return r
}

func checkRoot(g *guestRoot, rel *Release) (*Report, error) {
	var found *Candidate
	for i, c := range rel.Search {
		if g.exists(c.Path) {
			found = &rel.Search[i]
			break
		}
	}
	if found == nil {
		r := newReport(rel, "", "")
		msg := errNoConfig.Error() + " (pygrub " + rel.Name + " looked for " + searchList(rel) + ")"
		var next []byte // the config the guest boots with, for the problems after this one
		if rel != Xen417 {
			for _, c := range Xen417.Search {
				if g.exists(c.Path) {
					r.add(ProblemGrub2NotSearched, fmt.Sprintf("the guest's config is %s, which pygrub %s does not search; fix: %s, or %s", c.Path, rel.Name, fixMenuLst, fixLink))
					if c.Parser == ParserGrub2 {
						next, _ = g.readFile(c.Path)
					}
					break
				}
			}
		}
		r.add(ProblemNoConfig, msg)
		r.Bootable = false
		r.checkXFS(g)
		if next != nil && !usesBLS(next) {
			// Once the config is found (a symlink, a patched pygrub),
			// these are what the guest meets next: one read of check
			// lists everything to fix.
			r.compareWith417(next, ParserGrub2, FromImage)
		}
		r.checkBLS(g, "")
		return r, nil
	}
	r := newReport(rel, found.Path, found.Parser)
	data, err := g.readFile(found.Path)
	if err != nil {
		r.add(ProblemParseError, err.Error()) // it names the file
		return r, nil
	}
	cfg, perr := Parse(data, found.Parser, rel, FromImage)
	r.fill(cfg, perr)
	if rel != Xen417 {
		r.compareWith417(data, found.Parser, FromImage)
		r.checkXFS(g)
		// An old menu.lst found first while grub.cfg has newer kernels.
		if found.Parser == ParserLegacy {
			for _, c := range Xen417.Search {
				if c.Parser == ParserGrub2 && g.exists(c.Path) {
					r.checkStale(g, c.Path)
					break
				}
			}
		}
	}
	if r.Bootable {
		r.checkFiles(g, found.Path)
	}
	r.checkBLS(g, found.Path)
	return r, nil
}

// checkBLS looks for a Boot Loader Spec guest (a grub.cfg running blscfg).
// When pygrub reads a config other than opsctl's (the guest's own
// grub.cfg, which has no menuentry), it names the entries pygrub cannot
// read and the fix; when it reads opsctl's, it checks that this boots
// what grub boots now.
func (r *Report) checkBLS(g *guestRoot, found string) {
	config, data := findBLSConfig(g)
	if config == "" {
		return
	}
	bls, err := readBLSMenu(g, config, data)
	if err != nil {
		r.add(ProblemBLS, fmt.Sprintf("%s runs blscfg, which pygrub %s cannot run, and opsctl cannot read its entries: %v", config, r.Xen, err))
		r.Bootable = false
		return
	}
	ours := false
	if found != "" {
		if head, err := g.readFile(found); err == nil {
			ours = writtenByOpsctl(head)
		}
	}
	if !ours {
		what := "finds no config"
		if found != "" {
			what = "finds no menuentry in " + found
		}
		r.add(ProblemBLS, fmt.Sprintf("%s runs blscfg: %s, which pygrub %s cannot read (it %s); fix: %s", config, bls.describe(), r.Xen, what, fixBLS(g.path)))
		r.Bootable = false
		return
	}
	if len(bls.Boots) == 0 || r.Default < 0 || r.Default >= len(r.Entries) {
		return
	}
	want, got := bls.Boots[bls.Default], r.Entries[r.Default]
	wantInitrd := ""
	if len(want.Initrds) == 1 {
		wantInitrd = want.Initrds[0]
	}
	if got.Kernel != want.Kernel || got.Initrd != wantInitrd || got.Args != want.Args {
		r.add(ProblemStaleMenuLst, fmt.Sprintf("%s boots %s but grub boots %s (%s): it was not rewritten after a kernel update or a change of saved_entry; fix: %s", found, got.Kernel, want.Kernel, want.ID, fixBLS(g.path)))
	}
}

func searchList(rel *Release) string {
	paths := make([]string, len(rel.Search))
	for i, c := range rel.Search {
		paths[i] = c.Path
	}
	return strings.Join(paths, ", ")
}

func newReport(rel *Release, config string, p Parser) *Report {
	return &Report{Xen: rel.Name, Config: config, Parser: p, Default: -1, Entries: []Entry{}, Problems: []Problem{}}
}

func (r *Report) add(code, msg string) {
	r.Problems = append(r.Problems, Problem{Code: code, Message: msg})
}

// fill records the parse result and decides whether pygrub would find a
// kernel to boot.
func (r *Report) fill(cfg *Config, err error) {
	if err != nil {
		r.add(ProblemParseError, fmt.Sprintf("pygrub %s fails on %s: %v", r.Xen, r.configName(), err))
		return
	}
	if cfg.Entries != nil {
		r.Entries = cfg.Entries
	}
	r.Default = cfg.Default
	if len(cfg.Entries) == 0 {
		r.add(ProblemNoEntries, fmt.Sprintf("pygrub %s finds no boot entry in %s", r.Xen, r.configName()))
		return
	}
	if cfg.defaultIsTitle && cfg.RawDefault != "" {
		r.add(ProblemDefaultTitle, fmt.Sprintf("the default %s is not a number: pygrub %s boots entry 0 (%q)", pyRepr(cfg.RawDefault), r.Xen, cfg.Entries[0].Title))
	}
	def := cfg.Entries[cfg.Default]
	if !def.HasKernel || def.Kernel == "" {
		r.add(ProblemNoKernel, fmt.Sprintf("the default entry %d (%q) has no kernel line pygrub %s knows", cfg.Default, def.Title, r.Xen))
		return
	}
	r.Bootable = true
}

func (r *Report) configName() string {
	if r.Config == "" {
		return "the config"
	}
	return r.Config
}

// compareWith417 names what an old pygrub gets wrong compared to 4.17 on
// the same config.
func (r *Report) compareWith417(data []byte, p Parser, mode ReadMode) {
	if p != ParserGrub2 {
		return
	}
	lines, err := splitLines(data, mode)
	if err != nil {
		return
	}
	var linux16, submenu bool
	for _, raw := range lines {
		l := pyStrip(raw)
		com, _ := splitCommand(l)
		switch {
		case com == "linux16" || com == "initrd16":
			linux16 = true
		case strings.HasPrefix(l, "submenu"):
			submenu = true
		}
	}
	if linux16 {
		r.add(ProblemLinux16, fmt.Sprintf("the config boots with linux16/initrd16, which pygrub %s does not know: its entries have no kernel; fix: %s, or %s", r.Xen, fixPatch, fixMenuLst))
	}
	if submenu {
		r.add(ProblemSubmenu, fmt.Sprintf("pygrub %s does not know submenus: the closing brace of a submenu is a syntax error; fix: %s", r.Xen, fixMenuLst))
	}
	fixed, err := Parse(data, p, Xen417, mode)
	if err != nil {
		return
	}
	old, err := Parse(data, p, &Release{Name: r.Xen, title: Xen41.title, linux16: true, submenus: true, savedEntry: true, strictDefault: true}, mode)
	if err != nil || len(old.Entries) != len(fixed.Entries) {
		return
	}
	for i := range old.Entries {
		if old.Entries[i].Title != fixed.Entries[i].Title {
			r.add(ProblemGreedyTitle, fmt.Sprintf("the greedy menuentry regex %s reads entry %d's title as %q instead of %q (and a default or --entry given by title matches nothing); fix: %s: %s", GreedyTitlePattern, i, old.Entries[i].Title, fixed.Entries[i].Title, fixPatch, FixedTitlePattern))
			break
		}
	}
}

// checkXFS flags a /boot on XFS, which pygrub of Xen 4.1 cannot read.
func (r *Report) checkXFS(g *guestRoot) {
	if g.bootFSType() == "xfs" {
		r.add(ProblemXFS, fmt.Sprintf("/boot is on XFS in the guest's /etc/fstab and pygrub %s cannot read XFS; fix: %s", r.Xen, fixExt3))
		r.Bootable = false
	}
}

// checkStale flags a menu.lst whose default kernel is not the newest one
// of grub.cfg: the kickstart snippet that wrote it ran only once.
func (r *Report) checkStale(g *guestRoot, grubCfg string) {
	data, err := g.readFile(grubCfg)
	if err != nil || r.Default < 0 {
		return
	}
	cfg, err := Parse(data, ParserGrub2, Xen417, FromImage)
	if err != nil || cfg.Default < 0 {
		return
	}
	want := cfg.Entries[cfg.Default].Kernel
	if got := r.Entries[r.Default].Kernel; want != "" && got != want {
		r.add(ProblemStaleMenuLst, fmt.Sprintf("%s boots %s but %s boots %s: menu.lst was not updated after a kernel update; %s", r.Config, got, grubCfg, want, fixStale))
	}
}

// checkFiles makes sure the default kernel and initrd exist in the guest:
// pygrub copies them out and fails when they are missing. A path is looked
// up on the file system holding the config: under /boot when the guest's
// fstab mounts /boot on its own partition, else from the root.
func (r *Report) checkFiles(g *guestRoot, config string) {
	def := r.Entries[r.Default]
	separate := g.separateBoot() && strings.HasPrefix(config, "/boot/")
	exists := func(p string) bool {
		if separate {
			return g.exists(path.Join("/boot", p))
		}
		return g.exists(p)
	}
	if !exists(def.Kernel) {
		r.add(ProblemKernelMissing, fmt.Sprintf("the default entry's kernel %s is not in the guest", def.Kernel))
		r.Bootable = false
	}
	if def.HasInitrd && def.Initrd != "" && !exists(def.Initrd) {
		r.add(ProblemInitrdMissing, fmt.Sprintf("the default entry's initrd %s is not in the guest", def.Initrd))
		r.Bootable = false
	}
}
