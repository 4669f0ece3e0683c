package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/inputerr"
	"github.com/opsctl/opsctl/pkg/pygrubfix"
)

func newCmdPygrub(f *cli.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pygrub",
		Short: "Make EL7 (grub2) and EL8/EL9 (Boot Loader Spec) guests boot under Xen's pygrub",
		Long: `Xen PV guests are booted by pygrub on the host, which reads the guest's grub
config. Old pygrub (Xen 4.1) cannot boot EL7 guests: it does not search
/boot/grub2, its menuentry regex is greedy, it does not know linux16/initrd16
and it cannot read XFS. No pygrub boots EL8/EL9 guests: their grub.cfg runs
blscfg and the entries are Boot Loader Spec files in /boot/loader/entries.
These commands find out which guests are affected and fix them: patch the
host's pygrub, or write into the guest what pygrub reads first.`,
		Example: `  opsctl pygrub scan --check
  opsctl pygrub check --xen 4.1 /mnt
  opsctl pygrub patch --dry-run
  opsctl pygrub menulst --root /mnt --install --install-hook`,
	}
	cmd.AddCommand(
		newCmdPygrubCheck(f, nil),
		newCmdPygrubPatch(f, nil),
		newCmdPygrubMenuLst(f, nil),
		newCmdPygrubScan(f, nil),
	)
	return cmd
}

// ---- check

type pygrubCheckOptions struct {
	IO     *cli.IOStreams
	Path   string
	Xen    string
	Output *cli.OutputFlag
}

func newCmdPygrubCheck(f *cli.Factory, runF func(*pygrubCheckOptions) error) *cobra.Command {
	opts := &pygrubCheckOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "check PATH",
		Short: "Read a guest's boot config the way a pygrub release does",
		Long: `Read PATH, a grub config file or a guest's root folder, the way pygrub of a
Xen release would: which files it searches and in what order, how it parses
titles, which commands it knows. Prints the entries, the default, the problems
(each with its fix) and whether that pygrub would find a kernel to boot.

A file named menu.lst or grub.conf is read as grub-legacy, *linux.conf and
*linux.cfg as extlinux, anything else as grub2; one over 64 MiB is refused.
In a guest's root folder, symlinks are followed inside the folder (as a
chroot would) and only the first MiB of a config is read, as pygrub does;
FIFOs and device nodes are never opened. The text output shows control
characters of the guest's titles, paths and arguments escaped (\x1b);
-o json has them exact.

Exit status 1 when pygrub would not find a kernel; 2 when PATH does not
exist or is neither a folder nor a regular file.`,
		Example: `  # Would Debian wheezy's Xen 4.1 boot this EL7 guest (disk mounted on /mnt)?
  opsctl pygrub check --xen 4.1 /mnt

  # What does today's pygrub make of a grub.cfg?
  opsctl pygrub check /mnt/boot/grub2/grub.cfg -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Path = args[0]
			if runF != nil {
				return runF(opts)
			}
			return runPygrubCheck(opts)
		},
	}
	cli.EnumVar(cmd.Flags(), &opts.Xen, "xen", "4.17", []string{"4.17", "4.1"}, "pygrub of which Xen release (4.1: 4.1.0-4.1.2)").Accept("4.1.0", "4.1.1", "4.1.2")
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json")
	return cmd
}

func runPygrubCheck(opts *pygrubCheckOptions) error {
	rel, err := pygrubfix.LookupRelease(opts.Xen)
	if err != nil {
		return cli.UsageError(pygrubRename(err))
	}
	rep, err := pygrubfix.Check(opts.Path, rel)
	if err != nil {
		return pygrubError("pygrub check", "", err)
	}
	if opts.Output.JSON() {
		if err := cli.WriteJSON(opts.IO.Out, rep); err != nil {
			return err
		}
	} else {
		printCheckReport(opts.IO.Out, rep)
	}
	if !rep.Bootable {
		return cli.Silent(cli.ExitFailure)
	}
	return nil
}

// printCheckReport prints the report for people. Everything that comes
// from the guest (titles, paths, arguments, messages quoting them) is
// shown with its control characters escaped; JSON keeps it exact.
func printCheckReport(w io.Writer, rep *pygrubfix.Report) {
	if rep.Config == "" {
		fmt.Fprintf(w, "pygrub %s: no boot loader config found\n", rep.Xen)
	} else {
		fmt.Fprintf(w, "pygrub %s: %s (%s)\n", rep.Xen, escapeControls(rep.Config), rep.Parser)
	}
	for i, e := range rep.Entries {
		mark := " "
		if i == rep.Default {
			mark = "*"
		}
		fmt.Fprintf(w, "%s %d: %s\n", mark, i, escapeControls(e.Title))
		if e.HasKernel {
			fmt.Fprintf(w, "      kernel %s\n", escapeControls(e.Kernel))
		} else {
			fmt.Fprintf(w, "      (no kernel)\n")
		}
		if e.Initrd != "" {
			fmt.Fprintf(w, "      initrd %s\n", escapeControls(e.Initrd))
		}
		if e.Args != "" {
			fmt.Fprintf(w, "      args   %s\n", escapeControls(e.Args))
		}
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "problem %s: %s\n", p.Code, escapeControls(p.Message))
	}
	if rep.Bootable {
		fmt.Fprintf(w, "bootable: yes (entry %d)\n", rep.Default)
	} else {
		fmt.Fprintln(w, "bootable: no")
	}
}

// ---- patch

type pygrubPatchOptions struct {
	IO     *cli.IOStreams
	Pygrub string
	Check  bool
	DryRun bool
}

func newCmdPygrubPatch(f *cli.Factory, runF func(*pygrubPatchOptions) error) *cobra.Command {
	opts := &pygrubPatchOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "patch",
		Short: "Fix the host's pygrub for EL7 guests (non-greedy titles, linux16)",
		Long: `Find the host's pygrub grub parser (GrubConf.py beside the pygrub script,
on the distribution's python path, or the script itself) and apply Xen's fixes
where they are missing: the non-greedy menuentry title regex ((.*) -> (.*?))
and linux16/initrd16 support. The original is kept as FILE.orig (FILE.orig.N
when that exists; no backup is ever overwritten); the new file is written
atomically with the same mode, owner and extended attributes. Running it
again changes nothing. Code that is not what the patcher expects, or a
parser file that is not a regular file, is refused, the line shown, and
nothing is changed. A --pygrub that does not exist or is not a regular file
exits 2.`,
		Example: `  # Is a patch needed? (exit 1 when it is)
  opsctl pygrub patch --check

  # Show the change as a unified diff, then apply it
  opsctl pygrub patch --dry-run
  opsctl pygrub patch --pygrub /usr/lib/xen-4.1/bin/pygrub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runPygrubPatch(opts)
		},
	}
	cmd.Flags().StringVar(&opts.Pygrub, "pygrub", "", "`PATH` of the pygrub script or its GrubConf.py (default: search /usr/lib/xen-*/bin/pygrub and the usual places)")
	cmd.Flags().BoolVar(&opts.Check, "check", false, "change nothing; exit 1 when a patch is needed")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "print the unified diff of the patch and change nothing")
	return cmd
}

func runPygrubPatch(opts *pygrubPatchOptions) error {
	paths, err := pygrubfix.FindParsers(opts.Pygrub)
	if err != nil {
		return pygrubError("pygrub patch", "--pygrub", err)
	}
	plan, err := pygrubfix.PlanPatch(paths)
	if err != nil {
		return pygrubError("pygrub patch", "", err)
	}
	defer plan.Close()
	if opts.DryRun {
		fmt.Fprint(opts.IO.Out, plan.Diff())
	}
	if opts.Check || opts.DryRun {
		for _, f := range plan.Files {
			if len(f.Changes) == 0 {
				fmt.Fprintf(opts.IO.ErrOut, "%s: up to date\n", f.Path)
				continue
			}
			fmt.Fprintf(opts.IO.ErrOut, "%s: patch needed: %s\n", f.Path, strings.Join(f.Changes, "; "))
		}
		if opts.Check && plan.Needed() {
			return cli.Silent(cli.ExitFailure)
		}
		return nil
	}
	if _, err := plan.Apply(); err != nil {
		return pygrubError("pygrub patch", "", err)
	}
	for _, f := range plan.Files {
		if len(f.Changes) == 0 {
			fmt.Fprintf(opts.IO.Out, "%s: already patched\n", f.Path)
			continue
		}
		fmt.Fprintf(opts.IO.Out, "%s: patched (backup %s): %s\n", f.Path, f.Backup, strings.Join(f.Changes, "; "))
	}
	return nil
}

// ---- menulst

type pygrubMenuLstOptions struct {
	IO          *cli.IOStreams
	Root        string
	GrubCfg     string
	Write       string
	Kickstart   bool
	Install     bool
	InstallHook bool
	DryRun      bool
}

func newCmdPygrubMenuLst(f *cli.Factory, runF func(*pygrubMenuLstOptions) error) *cobra.Command {
	opts := &pygrubMenuLstOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "menulst (--root DIR | --grub-cfg FILE) [-w FILE] | --root DIR --install [--install-hook] | --kickstart",
		Short: "Write what old pygrub (menu.lst) or any pygrub (BLS guests) reads",
		Long: `Write a grub-legacy menu.lst from a guest's grub2 entries (title, root,
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
kind expected.`,
		Example: `  # Guest disk mounted on /mnt: write its menu.lst (the guest's /boot/grub
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
  opsctl pygrub menulst --root /mnt/sysimage --kickstart -w post-menulst.ks`,
		Args: cobra.NoArgs,
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

func runPygrubMenuLst(opts *pygrubMenuLstOptions) error {
	const cmd = "pygrub menulst"
	if opts.Write == "-" {
		opts.Write = "" // stdout
	}
	if opts.Install || opts.InstallHook {
		return runPygrubMenuLstInstall(opts)
	}
	if opts.Kickstart {
		if opts.GrubCfg != "" {
			return cli.Usagef("%s: --grub-cfg does not go with --kickstart: the %%post section writes menu.lst from the installed kernels (--root DIR says where the installed system is)", cmd)
		}
		// --root is where the installed system will be when the section
		// runs, not a folder of this host: -w is a host path.
		post := pygrubfix.KickstartPost(opts.Root)
		if opts.Write == "" {
			fmt.Fprint(opts.IO.Out, post)
			return nil
		}
		return writePygrubFile(opts, "", post, "a %post section")
	}
	if (opts.Root == "") == (opts.GrubCfg == "") {
		return cli.Usagef("%s: expected exactly one of --root DIR or --grub-cfg FILE (or --kickstart)", cmd)
	}
	var m *pygrubfix.MenuLst
	var err error
	if opts.Root != "" {
		m, err = pygrubfix.MenuLstFromRoot(opts.Root)
		err = pygrubError(cmd, "--root", err)
	} else {
		m, err = pygrubfix.MenuLstFromFile(opts.GrubCfg)
		err = pygrubError(cmd, "--grub-cfg", err)
	}
	if m == nil {
		return err
	}
	text, err := m.Text()
	if err != nil {
		return pygrubError(cmd, "", err)
	}
	if opts.Write == "" {
		fmt.Fprint(opts.IO.Out, text)
		return nil
	}
	return writePygrubFile(opts, opts.Root, text, fmt.Sprintf("%d entries, default %d", len(m.Entries), m.Default))
}

// runPygrubMenuLstInstall is menulst --install [--install-hook].
func runPygrubMenuLstInstall(opts *pygrubMenuLstOptions) error {
	const cmd = "pygrub menulst"
	switch {
	case opts.Root == "":
		return cli.Usagef("%s: --install writes into a guest: it needs --root DIR", cmd)
	case opts.GrubCfg != "" || opts.Write != "" || opts.Kickstart:
		return cli.Usagef("%s: --install writes where pygrub reads: it does not go with --grub-cfg, -w or --kickstart", cmd)
	}
	plan, err := pygrubfix.PlanInstall(opts.Root, opts.InstallHook)
	if err != nil {
		return pygrubError(cmd, "--root", err)
	}
	defer plan.Close()
	if opts.DryRun {
		for _, f := range plan.Files {
			fmt.Fprintf(opts.IO.Out, "# would write %s (%s in the guest, for %s), mode %#o%s:\n%s", f.HostPath, f.Path, f.For, f.Mode, pygrubInstallNotes(f), f.Text)
		}
		return nil
	}
	if err := plan.Apply(); err != nil {
		return pygrubError(cmd, "", err)
	}
	m := plan.Menu
	for _, f := range plan.Files {
		fmt.Fprintf(opts.IO.ErrOut, "wrote %s for %s%s\n", escapeControls(f.HostPath), f.For, pygrubInstallNotes(f))
	}
	fmt.Fprintf(opts.IO.ErrOut, "%d entries, default %d: %s (%s)\n", len(m.Entries), m.Default, escapeControls(m.Entries[m.Default].Title), escapeControls(m.Entries[m.Default].Kernel))
	for _, d := range m.Dropped {
		fmt.Fprintf(opts.IO.ErrOut, "left out %s\n", escapeControls(d))
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
func writePygrubFile(opts *pygrubMenuLstOptions, root, text, what string) error {
	const cmd = "pygrub menulst"
	w, err := pygrubfix.PlanMenuLstWrite(root, opts.Write)
	if err != nil {
		return pygrubError(cmd, "-w", err)
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
		return pygrubError(cmd, "", err)
	}
	if backup != "" {
		what += "; kept the file that was there as " + backup
	}
	fmt.Fprintf(opts.IO.ErrOut, "wrote %s: %s\n", opts.Write, what)
	return nil
}

// ---- scan

type pygrubScanOptions struct {
	IO      *cli.IOStreams
	Connect string
	Check   bool
	Pygrub  string
	Timeout time.Duration
	Output  *cli.OutputFlag
}

func newCmdPygrubScan(f *cli.Factory, runF func(*pygrubScanOptions) error) *cobra.Command {
	opts := &pygrubScanOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "scan",
		Short: "List the libvirt domains booted by pygrub, and check them",
		Long: `Ask libvirt for every domain (running or not) and list those whose
<bootloader> is pygrub, with their disks. With --check, run the host's pygrub
in list mode on each disk (and, where pygrub has --not-really, a dry boot) and
report the guests that would not boot; a guest boots when its first disk does.
Run it before rebooting a Xen host. Exit status 1 when a checked guest would
not boot; 2 when --pygrub does not exist or is not a regular file. The text
output shows control characters of names and pygrub's messages escaped.`,
		Example: `  # Before rebooting the host: would every PV guest come back?
  opsctl pygrub scan --check

  # A libvirtd listening on another socket
  opsctl pygrub scan --connect 'xen:///system?socket=/run/libvirt/virtxend-sock' -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runPygrubScan(opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Connect, "connect", "c", pygrubfix.DefaultURI, "libvirt `URI` (?socket=PATH picks the unix socket)")
	cmd.Flags().BoolVar(&opts.Check, "check", false, "run the host's pygrub on each disk")
	cmd.Flags().StringVar(&opts.Pygrub, "pygrub", "", "with --check: run the pygrub at `PATH` instead of each domain's bootloader")
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 30*time.Second, "time allowed to reach libvirt and list the domains (`DURATION`)")
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json")
	return cmd
}

func runPygrubScan(opts *pygrubScanOptions) error {
	uri, err := pygrubfix.ParseURI(opts.Connect)
	if err != nil {
		return cli.UsageError(pygrubRename(err))
	}
	if opts.Check && opts.Pygrub != "" {
		// Named on the command line: a missing one is a usage error, found
		// before libvirt is asked anything.
		if _, err := pygrubfix.HostPygrub(opts.Pygrub, ""); err != nil {
			return pygrubError("pygrub scan", "--pygrub", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	guests, err := pygrubfix.Scan(ctx, uri)
	cancel()
	if err != nil {
		var connErr *pygrubfix.ConnectError
		if errors.As(err, &connErr) {
			return cli.TemporaryError(fmt.Errorf("pygrub scan: %w", err))
		}
		return fmt.Errorf("pygrub scan: %w", err)
	}
	var failed []string
	if opts.Check {
		failed = pygrubfix.CheckGuests(context.Background(), guests, opts.Pygrub)
	}
	if opts.Output.JSON() {
		if err := cli.WriteJSON(opts.IO.Out, guests); err != nil {
			return err
		}
	} else {
		printScanTable(opts.IO.Out, guests, opts.Check)
	}
	if len(failed) > 0 {
		fmt.Fprintf(opts.IO.ErrOut, "%d of %d pygrub guests would not boot: %s\n", len(failed), len(guests), escapeControls(strings.Join(failed, ", ")))
		return cli.Silent(cli.ExitFailure)
	}
	return nil
}

// printScanTable prints the guests for people, with the control characters
// of what comes from libvirt and from the guests' disks (pygrub's output
// quotes their titles) escaped.
func printScanTable(w io.Writer, guests []pygrubfix.Guest, check bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := "DOMAIN\tBOOTLOADER\tDISKS"
	if check {
		header += "\tBOOTS\tDETAIL"
	}
	fmt.Fprintln(tw, header)
	for _, g := range guests {
		line := escapeControls(g.Domain) + "\t" + escapeControls(g.Bootloader) + "\t" + escapeControls(strings.Join(g.Disks, ","))
		if g.Check != nil {
			boots := "yes"
			if !g.Check.Bootable {
				boots = "NO"
			}
			line += "\t" + boots + "\t" + escapeControls(g.Check.Detail)
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

// pygrubFlagNames are the flags that fill in pygrubfix's inputs: errors of
// the package name the inputs (and hint at them: "use MenuLstFromRoot",
// "the KickstartPost %post section"), the user reads the flags.
var pygrubFlagNames = map[string]string{
	"Release.Name":       "--xen",
	"ParseURI.uri":       "--connect",
	"FindParsers.pygrub": "--pygrub",
	"MenuLstFromRoot":    "--root",
	"PlanInstall.hook":   "--install-hook",
	"KickstartPost":      "--kickstart",
}

// pygrubRename shows the flags in an error of pygrubfix.
func pygrubRename(err error) error { return inputerr.Rename(err, pygrubFlagNames) }

// pygrubError words err of the command cmd ("pygrub menulst"): a path that
// is missing or not the kind wanted (pygrubfix.InputError) is a usage
// error (exit 2) naming flag, the flag that gave it ("" for an argument);
// anything else is a failure (exit 1). The inputs the package names are
// shown as their flags. Messages may quote a guest's files, so their
// control characters are escaped. A nil err stays nil.
func pygrubError(cmd, flag string, err error) error {
	if err == nil {
		return nil
	}
	err = pygrubRename(err)
	var in *pygrubfix.InputError
	if errors.As(err, &in) {
		if flag != "" {
			flag += " "
		}
		return &escapedError{cli.UsageError(fmt.Errorf("%s: %s%w", cmd, flag, err))}
	}
	return &escapedError{fmt.Errorf("%s: %w", cmd, err)}
}

// escapedError is err with the control characters of its message escaped.
type escapedError struct{ err error }

func (e *escapedError) Error() string { return escapeControls(e.err.Error()) }
func (e *escapedError) Unwrap() error { return e.err }

// escapeControls shows the control characters of s (C0 and C1, DEL, bytes
// that are not UTF-8, and the Unicode controls of text direction and line
// separation) as \xNN or \uNNNN, so that text from a guest cannot send
// escape sequences to the terminal (retitle it, clear it, fake lines).
// Backslashes are left alone: the result is for reading; JSON is for
// exact values.
func escapeControls(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unicode.IsControl(r) || reordersText(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[:size])
		}
		s = s[size:]
	}
	return b.String()
}

// reordersText reports whether r is one of the Unicode format characters
// that change the order or the lines of the text around them on a
// terminal (bidirectional overrides, isolates, marks; line and paragraph
// separators).
func reordersText(r rune) bool {
	switch {
	case r == 0x061c, r == 0x200e, r == 0x200f, r == 0x2028, r == 0x2029:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}
