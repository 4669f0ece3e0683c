package pygrubfix

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/opsctl/opsctl/internal/inputerr"
)

// DefaultURI is the libvirt URI of the local Xen toolstack.
const DefaultURI = "xen:///system"

// Guest is a libvirt domain booted by pygrub.
type Guest struct {
	Domain     string     `json:"domain"`
	Bootloader string     `json:"bootloader"`
	Disks      []string   `json:"disks"`
	Check      *DiskCheck `json:"check,omitempty"`
}

// DiskCheck is what the host's pygrub makes of a guest's disks.
type DiskCheck struct {
	// Bootable is the answer for the boot disk, the first one: it is the
	// one the toolstack hands to pygrub.
	Bootable bool   `json:"bootable"`
	Detail   string `json:"detail"`
}

// ConnectError is a libvirt daemon that could not be reached; trying again
// later may work.
type ConnectError struct{ Err error }

func (e *ConnectError) Error() string   { return e.Err.Error() }
func (e *ConnectError) Unwrap() error   { return e.Err }
func (e *ConnectError) Temporary() bool { return true }

// goLibvirtDials reports whether go-libvirt has a dialer for the URI
// transport (the part of the scheme after "+").
func goLibvirtDials(transport string) bool {
	switch transport {
	case "unix", "tcp", "tls", "ssh", "libssh", "libssh2":
		return true
	}
	return false
}

// ParseURI checks a libvirt URI for Scan. A URI that is not one, or whose
// transport go-libvirt cannot dial, is an *inputerr.Error of ParseURI.uri.
func ParseURI(uri string) (*url.URL, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" {
		return nil, inputerr.New("ParseURI.uri", strconv.Quote(uri), "expected a libvirt URI such as xen:///system or test:///path/node.xml?socket=/run/libvirt/libvirt-sock")
	}
	if _, transport, ok := strings.Cut(u.Scheme, "+"); ok && !goLibvirtDials(transport) {
		return nil, inputerr.New("ParseURI.uri", strconv.Quote(uri), fmt.Sprintf("unsupported transport %q (expected unix, tcp, tls, ssh, libssh or libssh2)", transport))
	}
	return u, nil
}

// Scan lists the domains of the libvirt at uri that boot with pygrub, and
// their disks. It connects through go-libvirt's dialers: a unix socket
// (libvirtd's default one, or ?socket=PATH), tcp, tls or ssh as the URI
// says.
func Scan(ctx context.Context, uri *url.URL) ([]Guest, error) {
	type result struct {
		guests []Guest
		err    error
	}
	done := make(chan result, 1)
	go func() {
		guests, err := scan(uri)
		done <- result{guests, err}
	}()
	select {
	case r := <-done:
		return r.guests, r.err
	case <-ctx.Done():
		return nil, &ConnectError{fmt.Errorf("libvirt %s: %w", uri.Redacted(), ctx.Err())}
	}
}

func scan(uri *url.URL) ([]Guest, error) {
	l, err := libvirt.ConnectToURI(uri)
	if err != nil {
		return nil, connectionError(fmt.Errorf("libvirt %s: %w", uri.Redacted(), err))
	}
	defer l.Disconnect()
	domains, _, err := l.ConnectListAllDomains(1, 0)
	if err != nil {
		return nil, connectionError(fmt.Errorf("libvirt %s: list domains: %w", uri.Redacted(), err))
	}
	guests := []Guest{}
	for _, d := range domains {
		desc, err := l.DomainGetXMLDesc(d, 0)
		if err != nil {
			return nil, connectionError(fmt.Errorf("domain %s: %w", d.Name, err))
		}
		var dom libvirtxml.Domain
		if err := dom.Unmarshal(desc); err != nil {
			return nil, fmt.Errorf("domain %s: XML: %w", d.Name, err)
		}
		if !isPygrub(dom.Bootloader) {
			continue
		}
		g := Guest{Domain: dom.Name, Bootloader: dom.Bootloader, Disks: []string{}}
		if dom.Devices != nil {
			for _, disk := range dom.Devices.Disks {
				if p := diskPath(l, disk); p != "" {
					g.Disks = append(g.Disks, p)
				}
			}
		}
		guests = append(guests, g)
	}
	sort.Slice(guests, func(i, j int) bool { return guests[i].Domain < guests[j].Domain })
	return guests, nil
}

// connectionError marks err as a ConnectError when libvirtd could not be
// reached or hung up (restarting, over max_clients): a later try may work.
func connectionError(err error) error {
	var netErr *net.OpError
	if errors.As(err, &netErr) || errors.Is(err, libvirt.ErrInterrupted) {
		return &ConnectError{err}
	}
	return err
}

func isPygrub(bootloader string) bool {
	return strings.Contains(filepath.Base(bootloader), "pygrub")
}

// diskPath is the host path of a disk pygrub can read ("" for CD-ROMs and
// floppies); a storage volume is resolved through its pool, a network
// disk is named by protocol and name.
func diskPath(l *libvirt.Libvirt, disk libvirtxml.DomainDisk) string {
	if disk.Device != "" && disk.Device != "disk" && disk.Device != "lun" {
		return ""
	}
	src := disk.Source
	switch {
	case src == nil:
		return ""
	case src.File != nil:
		return src.File.File
	case src.Block != nil:
		return src.Block.Dev
	case src.Volume != nil:
		if pool, err := l.StoragePoolLookupByName(src.Volume.Pool); err == nil {
			if vol, err := l.StorageVolLookupByName(pool, src.Volume.Volume); err == nil {
				if p, err := l.StorageVolGetPath(vol); err == nil {
					return p
				}
			}
		}
		return src.Volume.Pool + "/" + src.Volume.Volume
	case src.Network != nil:
		return src.Network.Protocol + ":" + src.Network.Name
	}
	return ""
}

// Pygrub runs a host's pygrub on guest disks.
type Pygrub struct {
	Path string
	// notReally, outputDir and debug are whether this pygrub knows -n,
	// --output-directory and --debug (Xen 4.1's knows none of them).
	notReally, outputDir, debug bool
}

// HostPygrub finds the pygrub that runs for a domain: override when given
// (one that is missing or not a regular file is an InputError),
// else the domain's bootloader (an absolute path must exist: the
// toolstack runs exactly that), else for a bare name the one on PATH or in
// the usual places.
func HostPygrub(override, bootloader string) (*Pygrub, error) {
	var candidates []string
	switch {
	case override != "":
		candidates = []string{override}
	case filepath.IsAbs(bootloader):
		candidates = []string{bootloader}
	default:
		if p, err := exec.LookPath(bootloader); err == nil {
			candidates = append(candidates, p)
		}
		for _, pattern := range DefaultPygrubs {
			m, _ := filepath.Glob(pattern)
			candidates = append(candidates, m...)
		}
	}
	for _, c := range candidates {
		src, err := readHostFile(c, maxParserSize, false)
		if err != nil {
			if override != "" {
				return nil, namedInput(override, err, "a pygrub script")
			}
			continue
		}
		return &Pygrub{Path: c,
			notReally: bytes.Contains(src, []byte(`"not-really"`)),
			outputDir: bytes.Contains(src, []byte(`"output-directory="`)),
			debug:     bytes.Contains(src, []byte(`"debug"`)),
		}, nil
	}
	return nil, fmt.Errorf("bootloader %s not found on this host", bootloader)
}

var pygrubUsing = regexp.MustCompile(`Using <class '[\w.]*\.(\w+)'> to parse (\S+)`)

// CheckDisk runs `pygrub -l DISK` (and, where pygrub has --not-really,
// `pygrub -n -q DISK`, which fails as a real boot would) and says whether
// it would boot.
func (p *Pygrub) CheckDisk(ctx context.Context, disk string) DiskCheck {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	outDir, err := os.MkdirTemp("", "opsctl-pygrub-")
	if err != nil {
		return DiskCheck{Detail: err.Error()}
	}
	defer os.RemoveAll(outDir)
	common := []string{}
	if p.outputDir {
		common = append(common, "--output-directory", outDir)
	}
	if p.notReally {
		common = append(common, "-n")
	}
	run := func(args ...string) (string, string, error) {
		cmd := exec.CommandContext(ctx, p.Path, append(append(args, common...), disk)...)
		cmd.Env = append(os.Environ(), "TERM=dumb")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	listArgs := []string{"-l"}
	if p.debug {
		// pygrub swallows the exception of a config it cannot parse; with
		// --debug it prints it.
		listArgs = append(listArgs, "--debug")
	}
	stdout, stderr, err := run(listArgs...)
	config := ""
	if m := pygrubUsing.FindStringSubmatch(stderr); m != nil {
		config = m[2]
	}
	var titles, kernels []string
	for _, line := range strings.Split(stdout, "\n") {
		if t, ok := strings.CutPrefix(line, "title: "); ok {
			titles = append(titles, t)
		} else if k, ok := strings.CutPrefix(line, "  kernel: "); ok {
			kernels = append(kernels, k)
		}
	}
	switch {
	case err != nil:
		return DiskCheck{Detail: fmt.Sprintf("%s: pygrub -l failed: %s", disk, lastMeaningfulLine(stderr, err))}
	case config == "":
		return DiskCheck{Detail: fmt.Sprintf("%s: pygrub: couldn't find bootloader config file in the image provided", disk)}
	case len(kernels) == 0:
		why := "lists no entry with a kernel"
		if l := lastMeaningfulLine(stderr, nil); strings.Contains(l, "Error") {
			why = "fails: " + l
		}
		return DiskCheck{Detail: fmt.Sprintf("%s: pygrub reads %s but %s%s", disk, config, why, blsHint(config, stderr))}
	}
	detail := fmt.Sprintf("%s: %s, %d entries, first %q (%s)", disk, config, len(titles), titles[0], kernels[0])
	if p.notReally {
		if _, stderr, err := run("-q"); err != nil {
			return DiskCheck{Detail: fmt.Sprintf("%s: pygrub lists %s but fails to boot: %s", disk, config, lastMeaningfulLine(stderr, err))}
		}
	}
	return DiskCheck{Bootable: true, Detail: detail}
}

// blsHint names the Boot Loader Spec fix when pygrub's failure on a
// grub2 config in grub2/ is that of an EL8/EL9 guest: "Unknown directive
// blscfg" (pygrub logs it), or the exception EL8/EL9's grub.cfg raises
// before pygrub gets there (set kernelopts="root=... ro": too many values
// to unpack). pygrub's output cannot tell more; check on the mounted
// guest can.
func blsHint(config, stderr string) string {
	if !strings.HasSuffix(config, "grub2/grub.cfg") {
		return ""
	}
	switch {
	case strings.Contains(stderr, "Unknown directive blscfg"):
		return "; grub.cfg runs blscfg: a Boot Loader Spec guest (EL8/EL9) whose entries pygrub cannot read; fix: " + fixBLSDisk
	case strings.Contains(stderr, "too many values to unpack"):
		return "; this is how pygrub fails on the grub.cfg of a Boot Loader Spec guest (EL8/EL9: set kernelopts=\"root=...\" before blscfg); fix: " + fixBLSDisk
	}
	return ""
}

// lastMeaningfulLine is the last line of pygrub's stderr that is not a
// logging warning: the exception or the message it exits with.
func lastMeaningfulLine(stderr string, err error) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l != "" && !strings.HasPrefix(l, "WARNING:") && !strings.HasPrefix(l, "INFO:") && !strings.HasPrefix(l, "DEBUG:") && !strings.HasPrefix(l, "Using <class") {
			return l
		}
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// CheckGuests checks every guest as CheckGuest does, one after the other
// (pygrub on a disk is quick, and the host is about to reboot: no load to
// add), and returns the domains that would not boot, in the guests' order.
func CheckGuests(ctx context.Context, guests []Guest, override string) (unbootable []string) {
	for i := range guests {
		CheckGuest(ctx, &guests[i], override)
		if !guests[i].Check.Bootable {
			unbootable = append(unbootable, guests[i].Domain)
		}
	}
	return unbootable
}

// CheckGuest checks every disk of g with the host's pygrub; the guest
// boots when its first disk does.
func CheckGuest(ctx context.Context, g *Guest, override string) {
	p, err := HostPygrub(override, g.Bootloader)
	if err != nil {
		g.Check = &DiskCheck{Detail: err.Error()}
		return
	}
	if len(g.Disks) == 0 {
		g.Check = &DiskCheck{Detail: "no disk pygrub could read"}
		return
	}
	var details []string
	for i, disk := range g.Disks {
		c := p.CheckDisk(ctx, disk)
		if i == 0 {
			g.Check = &DiskCheck{Bootable: c.Bootable}
		}
		details = append(details, c.Detail)
	}
	g.Check.Detail = strings.Join(details, "; ")
}
