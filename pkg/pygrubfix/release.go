package pygrubfix

import (
	"regexp"
	"strconv"

	"github.com/opsctl/opsctl/internal/inputerr"
)

// Release is a pygrub as shipped with one Xen release: where it looks for a
// boot loader config and how its grub2 parser reads one.
type Release struct {
	// Name is the Xen version LookupRelease knows it by: "4.17" or "4.1".
	Name string
	// Search is the list of config files pygrub tries, in order, on each
	// partition of the guest's disk.
	Search []Candidate
	// title matches a menuentry line; group 1 is the title.
	title *regexp.Regexp
	// linux16 is whether linux16/initrd16 are known in a menuentry.
	linux16 bool
	// submenus is whether "submenu ... {" blocks are skipped; without it
	// the closing brace of a submenu is a syntax error.
	submenus bool
	// savedEntry is whether `set default="${saved_entry}"` (or next_entry)
	// is read as 0.
	savedEntry bool
	// strictDefault is whether the default is converted with int() when it
	// is set: a negative number is then an error and a title becomes 0.
	strictDefault bool
}

// Candidate is one config file pygrub looks for.
type Candidate struct {
	Path   string
	Parser Parser
}

// Parser names the config syntax pygrub uses for a file.
type Parser string

// The three parsers of pygrub used for Linux guests.
const (
	ParserGrub2    Parser = "grub2"
	ParserLegacy   Parser = "grub-legacy"
	ParserExtlinux Parser = "extlinux"
)

func candidates(p Parser, paths ...string) []Candidate {
	out := make([]Candidate, len(paths))
	for i, path := range paths {
		out[i] = Candidate{Path: path, Parser: p}
	}
	return out
}

// Xen417 is pygrub of Xen 4.17 (Debian 12's xen-utils-4.17): grub2 files
// first, /boot/grub2 searched, non-greedy titles, linux16 known, submenus
// skipped, ${saved_entry} read as 0.
var Xen417 = &Release{
	Name: "4.17",
	Search: concat(
		candidates(ParserGrub2, "/boot/grub/grub.cfg", "/grub/grub.cfg", "/boot/grub2/grub.cfg", "/grub2/grub.cfg"),
		candidates(ParserExtlinux, "/boot/isolinux/isolinux.cfg", "/boot/extlinux/extlinux.conf", "/boot/extlinux.conf", "/extlinux/extlinux.conf", "/extlinux.conf"),
		candidates(ParserLegacy, "/boot/grub/menu.lst", "/boot/grub/grub.conf", "/grub/menu.lst", "/grub/grub.conf"),
	),
	title:         regexp.MustCompile(`^menuentry ["'](.*?)["'] (.*)\{`),
	linux16:       true,
	submenus:      true,
	savedEntry:    true,
	strictDefault: true,
}

// Xen41 is pygrub as released in Xen 4.1.0 to 4.1.2 (4.1.3 added
// /boot/grub2): grub-legacy files first, no /boot/grub2, the greedy title
// regex that swallows EL7's `$menuentry_id_option '...'`, no
// linux16/initrd16 and no submenus.
var Xen41 = &Release{
	Name: "4.1",
	Search: concat(
		candidates(ParserLegacy, "/boot/grub/menu.lst", "/boot/grub/grub.conf", "/grub/menu.lst", "/grub/grub.conf"),
		candidates(ParserGrub2, "/boot/grub/grub.cfg", "/grub/grub.cfg"),
		candidates(ParserExtlinux, "/boot/isolinux/isolinux.cfg", "/boot/extlinux/extlinux.conf", "/boot/extlinux.conf", "/extlinux/extlinux.conf", "/extlinux.conf"),
	),
	title: regexp.MustCompile(`^menuentry ["'](.*)["'] (.*)\{`),
}

// GreedyTitlePattern and FixedTitlePattern are the menuentry regexes of
// pygrub before and after Xen's 2014 fix, as written in GrubConf.py.
const (
	GreedyTitlePattern = `^menuentry ["\'](.*)["\'] (.*){`
	FixedTitlePattern  = `^menuentry ["\'](.*?)["\'] (.*){`
)

func concat(lists ...[]Candidate) []Candidate {
	var out []Candidate
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// LookupRelease returns the Release of the Xen version name: "4.17" (or
// ""), "4.1" and its point releases 4.1.0 to 4.1.2. Another name is an
// *inputerr.Error of Release.Name.
func LookupRelease(name string) (*Release, error) {
	switch name {
	case "4.17", "":
		return Xen417, nil
	case "4.1", "4.1.0", "4.1.1", "4.1.2":
		return Xen41, nil
	}
	return nil, inputerr.New("Release.Name", strconv.Quote(name), "expected 4.17 or 4.1")
}
