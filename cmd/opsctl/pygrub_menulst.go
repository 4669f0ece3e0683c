package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/pygrubfix"
)

// PygrubMenuLstOptions are the inputs of `pygrub menulst`.
type PygrubMenuLstOptions struct {
	*cli.Factory
	Root        string
	GrubCfg     string
	Write       string
	Kickstart   bool
	Install     bool
	InstallHook bool
	DryRun      bool
}

// pygrubMenuLstCmd names the command in its messages.
const pygrubMenuLstCmd = "pygrub menulst"

// The help of `pygrub menulst`: its three forms take a page, kept out of
// NewCmdPygrubMenuLst so that the constructor reads at a glance.
const (
	pygrubMenuLstLong = `Write a grub-legacy menu.lst from a guest's grub2 entries (title, root,
kernel, initrd, args; the default from grubenv's saved_entry when grub.cfg
boots ${saved_entry} and it names an entry). pygrub of Xen 4.1 reads
/boot/grub/menu.lst before anything else. The result is read back through
pygrub's grub-legacy parser before it is written. Without -w, or with -w -,
it goes to stdout.

For an EL8/EL9 guest (grub.cfg runs blscfg) the entries are its Boot
Loader Spec files in /boot/loader/entries, read as grub's blscfg reads them:
newest first, $kernelopts and other variables from grubenv and grub.cfg
($tuned_params, $tuned_initrd empty when unset), the default from
saved_entry (an entry id, a title or a number), else the first entry.

--root DIR --install writes into the guest what pygrub reads first, so that
pygrub 4.17 and 4.1 boot the entry grub itself boots: for an EL8/EL9 guest
/boot/grub/grub.cfg (a grub2 menu, read by 4.17 before /boot/grub2) and
/boot/grub/menu.lst (read by 4.1 before anything else); for an EL7 guest
/boot/grub/menu.lst (4.17 reads its grub.cfg itself). The guest's own
/boot/grub2/grub.cfg and entries are not touched. /boot/grub is created
(0755) when the guest has none. --install-hook does the same and installs
/etc/kernel/install.d/99-opsctl-pygrub-menulst.install (0755, root's), a
kernel-install plugin that rewrites both files at every kernel installation
and removal, keeping saved_entry's choice (EL8/EL9 guests). --dry-run prints
each file and its content and writes nothing.

-w FILE is written atomically. Its folder must exist, and FILE must be a
regular file or not exist yet: a symlink, FIFO, device node or folder there
is refused (exit 2). With --root DIR (and no --kickstart), FILE must be
inside DIR and is
resolved as in the guest: the guest's symlinks are followed inside DIR, as
a chroot would, never to the host. A FILE that opsctl did not write (it has
no "written by opsctl" line at its top) is kept as FILE.orig, or FILE.orig.N
when that name is taken; opsctl's own menu.lst is replaced without a backup.

--kickstart prints a %post section for new guests (or writes it to the -w
FILE): it installs kernel hooks (/etc/kernel/postinst.d, /etc/kernel/prerm.d
and the kernel-install plugin) and runs them once. On EL8/EL9 they write
/boot/grub/grub.cfg and menu.lst from the BLS entries as --install does; on
EL7 menu.lst from the installed kernels. With --root DIR other than /, the
section is a %post --nochroot working on the installed system at DIR (e.g.
/mnt/sysimage).

Exit status 2 when DIR, FILE or -w's folder does not exist or is not the
kind expected.`
	pygrubMenuLstExample = `  # Guest disk mounted on /mnt: write its menu.lst (the guest's /boot/grub
  # must exist: mkdir /mnt/boot/grub when it does not)
  opsctl pygrub menulst --root /mnt -w /mnt/boot/grub/menu.lst

  # From a copy of grub.cfg, to stdout
  opsctl pygrub menulst --grub-cfg grub.cfg

  # An EL8/EL9 guest mounted on /mnt (its /boot on /mnt/boot): see what
  # would be written, then write it and the kernel-install plugin
  opsctl pygrub menulst --root /mnt --install --dry-run
  opsctl pygrub menulst --root /mnt --install --install-hook

  # Add to the kickstart of new guests
  opsctl pygrub menulst --kickstart >> el9-xen.ks

  # The same as a %post --nochroot section, into a file
  opsctl pygrub menulst --root /mnt/sysimage --kickstart -w post-menulst.ks`
)

// NewCmdPygrubMenuLst builds `pygrub menulst`; runF, when set, receives the
// options instead of runPygrubMenuLst (tests of the flags).
func NewCmdPygrubMenuLst(f *cli.Factory, runF func(*PygrubMenuLstOptions) error) *cobra.Command {
	opts := &PygrubMenuLstOptions{Factory: f}
	cmd := &cobra.Command{
		Use:     "menulst (--root DIR | --grub-cfg FILE) [-w FILE] | --root DIR --install [--install-hook] | --kickstart",
		Short:   "Write what old pygrub (menu.lst) or any pygrub (BLS guests) reads",
		Long:    pygrubMenuLstLong,
		Example: pygrubMenuLstExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runPygrubMenuLst(opts)
		},
	}
	cmd.Flags().StringVar(&opts.Root, "root", "", "the guest's root folder `DIR`")
	cmd.Flags().StringVar(&opts.GrubCfg, "grub-cfg", "", "a grub2 config `FILE`")
	cmd.Flags().StringVarP(&opts.Write, "write", "w", "", "write menu.lst to `FILE` (atomically; inside --root DIR, resolved as in the guest) instead of stdout (-)")
	cmd.Flags().BoolVar(&opts.Kickstart, "kickstart", false, "print a kickstart %post section that keeps menu.lst (and grub.cfg on EL8/EL9) current")
	cmd.Flags().BoolVar(&opts.Install, "install", false, "with --root: write into the guest what pygrub 4.17 and 4.1 read first")
	cmd.Flags().BoolVar(&opts.InstallHook, "install-hook", false, "with --root: --install, and the kernel-install plugin that keeps it current (EL8/EL9)")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "with -w or --install: print what would be written and change nothing")
	return cmd
}

func runPygrubMenuLst(opts *PygrubMenuLstOptions) error {
	if opts.Write == "-" {
		opts.Write = "" // stdout
	}
	if err := opts.validate(); err != nil {
		return err
	}
	switch {
	case opts.Install || opts.InstallHook:
		return runPygrubMenuLstInstall(opts)
	case opts.Kickstart:
		// --root is where the installed system will be when the section
		// runs, not a folder of this host: -w is a host path.
		post := pygrubfix.KickstartPost(opts.Root)
		if opts.Write == "" {
			fmt.Fprint(opts.IO.Out, post)
			return nil
		}
		return writePygrubFile(opts, "", post, "a %post section")
	}
	m, err := opts.menuLst()
	if err != nil {
		return err
	}
	text, err := m.Text()
	if err != nil {
		return pygrubError(pygrubMenuLstCmd, "", err)
	}
	if opts.Write == "" {
		fmt.Fprint(opts.IO.Out, text)
		return nil
	}
	return writePygrubFile(opts, opts.Root, text, fmt.Sprintf("%d entries, default %d", len(m.Entries), m.Default))
}

// validate checks that the flags make one of menulst's forms: --install
// into a --root, --kickstart, or a menu from --root or --grub-cfg.
func (opts *PygrubMenuLstOptions) validate() error {
	const cmd = pygrubMenuLstCmd
	switch {
	case opts.Install || opts.InstallHook:
		if opts.Root == "" {
			return cli.Usagef("%s: --install writes into a guest: it needs --root DIR", cmd)
		}
		if opts.GrubCfg != "" || opts.Write != "" || opts.Kickstart {
			return cli.Usagef("%s: --install writes where pygrub reads: it does not go with --grub-cfg, -w or --kickstart", cmd)
		}
	case opts.Kickstart:
		if opts.GrubCfg != "" {
			return cli.Usagef("%s: --grub-cfg does not go with --kickstart: the %%post section writes menu.lst from the installed kernels (--root DIR says where the installed system is)", cmd)
		}
	case (opts.Root == "") == (opts.GrubCfg == ""):
		return cli.Usagef("%s: expected exactly one of --root DIR or --grub-cfg FILE (or --kickstart)", cmd)
	}
	return nil
}

// menuLst reads the menu of the guest at --root, or of --grub-cfg.
func (opts *PygrubMenuLstOptions) menuLst() (*pygrubfix.MenuLst, error) {
	if opts.Root != "" {
		m, err := pygrubfix.MenuLstFromRoot(opts.Root)
		return m, pygrubError(pygrubMenuLstCmd, "--root", err)
	}
	m, err := pygrubfix.MenuLstFromFile(opts.GrubCfg)
	return m, pygrubError(pygrubMenuLstCmd, "--grub-cfg", err)
}

// runPygrubMenuLstInstall is menulst --install [--install-hook].
func runPygrubMenuLstInstall(opts *PygrubMenuLstOptions) error {
	plan, err := pygrubfix.PlanInstall(opts.Root, opts.InstallHook)
	if err != nil {
		return pygrubError(pygrubMenuLstCmd, "--root", err)
	}
	defer plan.Close()
	if opts.DryRun {
		for _, f := range plan.Files {
			fmt.Fprintf(opts.IO.Out, "# would write %s (%s in the guest, for %s), mode %#o%s:\n%s", f.HostPath, f.Path, f.For, f.Mode, pygrubInstallNotes(f), f.Text)
		}
		return nil
	}
	if err := plan.Apply(); err != nil {
		return pygrubError(pygrubMenuLstCmd, "", err)
	}
	m := plan.Menu
	for _, f := range plan.Files {
		opts.IO.Sayf("wrote %s for %s%s", escapeControls(f.HostPath), f.For, pygrubInstallNotes(f))
	}
	opts.IO.Sayf("%d entries, default %d: %s (%s)", len(m.Entries), m.Default, escapeControls(m.Entries[m.Default].Title), escapeControls(m.Entries[m.Default].Kernel))
	for _, d := range m.Dropped {
		opts.IO.Sayf("left out %s", escapeControls(d))
	}
	return nil
}

// pygrubInstallNotes says what else writing f does.
func pygrubInstallNotes(f *pygrubfix.InstallFile) string {
	notes := ""
	if f.CreateFolder != "" {
		notes += ", creating the folder " + f.CreateFolder
	}
	if f.Backup != "" {
		notes += ", keeping the file there as " + f.Backup
	}
	return notes
}

// writePygrubFile writes text to -w FILE (inside the guest root when root
// is set), or with --dry-run says what it would do; what is a summary for
// the message.
func writePygrubFile(opts *PygrubMenuLstOptions, root, text, what string) error {
	w, err := pygrubfix.PlanMenuLstWrite(root, opts.Write)
	if err != nil {
		return pygrubError(pygrubMenuLstCmd, "-w", err)
	}
	defer w.Close()
	if opts.DryRun {
		keep := ""
		if w.Backup != "" {
			keep = ", keeping the file there as " + w.Backup
		}
		fmt.Fprintf(opts.IO.Out, "# would write %s%s:\n%s", opts.Write, keep, text)
		return nil
	}
	backup, err := w.Apply([]byte(text))
	if err != nil {
		return pygrubError(pygrubMenuLstCmd, "", err)
	}
	if backup != "" {
		what += "; kept the file that was there as " + backup
	}
	opts.IO.Sayf("wrote %s: %s", opts.Write, what)
	return nil
}
