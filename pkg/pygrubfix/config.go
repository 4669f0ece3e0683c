package pygrubfix

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Config is a boot loader config as one pygrub release reads it.
type Config struct {
	Parser  Parser
	Entries []Entry
	// Default is the index of the entry pygrub boots when nothing is
	// chosen, after its own fall-backs (out of range: 0). It is -1 when
	// there is no entry.
	Default int
	// RawDefault is the default as written in the config, "" when unset.
	RawDefault string
	// defaultIsTitle records that a non-numeric default was given.
	defaultIsTitle bool
	// defaultSaved records that the default in force is grub2's
	// ${saved_entry} (GRUB_DEFAULT=saved): only then does grub2 boot what
	// grubenv names.
	defaultSaved bool
}

// Entry is one boot entry.
type Entry struct {
	Title string `json:"title"`
	// Kernel, Initrd and Args are what pygrub hands to the domain builder;
	// Initrd is the whole initrd argument, several files included.
	Kernel string `json:"kernel"`
	Initrd string `json:"initrd"`
	Args   string `json:"args"`

	// HasKernel is false for an entry without a kernel line that pygrub
	// knows (pygrub keeps such entries and fails when one is booted).
	HasKernel bool `json:"-"`
	HasInitrd bool `json:"-"`
	// Root is the entry's root device as written ("hd0,msdos1").
	Root string `json:"-"`
	// Lines are the entry's lines, stripped.
	Lines []string `json:"-"`
}

// ParseError is a config that pygrub itself fails on (it raises an
// exception and boots nothing). Msg mirrors pygrub's exception.
type ParseError struct {
	Line int // 1-based; 0 when not tied to a line
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// ReadMode is how pygrub turns the file into lines.
type ReadMode int

const (
	// FromImage is pygrub reading a guest disk: the first MiB of the file,
	// decoded as UTF-8, split at "\n" only.
	FromImage ReadMode = iota
	// FromFile is `pygrub --isconfig FILE`: the whole file read in text
	// mode, so "\r\n" and a lone "\r" end lines too.
	FromFile
)

// fsReadMax is pygrub's FS_READ_MAX: it reads at most this much of a config.
const fsReadMax = 1 << 20

// splitLines decodes data the way pygrub does and returns its lines.
func splitLines(data []byte, mode ReadMode) ([]string, error) {
	if mode == FromImage && len(data) > fsReadMax {
		data = data[:fsReadMax]
	}
	if !utf8.Valid(data) {
		return nil, &ParseError{Msg: errNotUTF8.Error()}
	}
	s := string(data)
	if mode == FromFile {
		s = strings.ReplaceAll(s, "\r\n", "\n")
		s = strings.ReplaceAll(s, "\r", "\n")
	}
	return strings.Split(s, "\n"), nil
}

// Parse reads data with the parser p of release rel.
func Parse(data []byte, p Parser, rel *Release, mode ReadMode) (*Config, error) {
	lines, err := splitLines(data, mode)
	if err != nil {
		return nil, err
	}
	var cfg *Config
	switch p {
	case ParserGrub2:
		cfg, err = parseGrub2(lines, rel)
	case ParserLegacy:
		cfg, err = parseLegacy(lines, rel)
	case ParserExtlinux:
		cfg, err = parseExtlinux(lines)
	default:
		return nil, fmt.Errorf("unknown parser %q", p)
	}
	if err != nil {
		return nil, err
	}
	cfg.Parser = p
	return cfg, nil
}

// grubSplit is GrubConf.grub_split: split at "=" when it comes before the
// first space or tab, else at white space.
func grubSplit(s string, maxsplit int) []string {
	eq := strings.IndexByte(s, '=')
	if eq == -1 {
		return pySplitSpace(s, maxsplit)
	}
	sp := strings.IndexByte(s, ' ')
	tab := strings.IndexByte(s, '\t')
	if (tab != -1 && tab < sp) || (tab != -1 && sp == -1) {
		sp = tab
	}
	if eq < sp || sp == -1 {
		return pySplitSep(s, "=", maxsplit)
	}
	return pySplitSpace(s, maxsplit)
}

// grubExactSplit is GrubConf.grub_exact_split: always num fields.
func grubExactSplit(s string, num int) []string {
	ret := grubSplit(s, num-1)
	for len(ret) < num {
		ret = append(ret, "")
	}
	return ret
}

// unpack2 is Python's `(a, b) = list`, which fails unless there are two.
func unpack2(parts []string) (string, string, error) {
	switch {
	case len(parts) < 2:
		return "", "", fmt.Errorf("not enough values to unpack (expected 2, got %d)", len(parts))
	case len(parts) > 2:
		return "", "", fmt.Errorf("too many values to unpack (expected 2)")
	}
	return parts[0], parts[1], nil
}

// checkDiskPart validates a grub device the way GrubDiskPart does when it
// is built ("hd0,msdos1", "(hd0,0)", "/dev/xvda"), returning its error.
func checkDiskPart(s string) error {
	disk, part := s, ""
	hasPart := strings.Contains(s, ",")
	if hasPart {
		var err error
		disk, part, err = unpack2(pySplitSep(s, ",", 2))
		if err != nil {
			return err
		}
	}
	disk = parenRemover.Replace(disk)
	if strings.HasPrefix(disk, "/dev/xvd") {
		if utf8.RuneCountInString(disk) <= len("/dev/xvd") {
			return fmt.Errorf("string index out of range")
		}
	} else if _, err := pyInt(pySlice(disk, 2)); err != nil {
		return err
	}
	if !hasPart {
		return nil
	}
	part = parenRemover.Replace(part)
	part = strings.TrimPrefix(part, "msdos")
	part = strings.TrimPrefix(part, "gpt")
	_, err := pyInt(part)
	return err
}

// getPath is GrubConf.get_path: "(hd0,0)/vmlinuz" is the device and the
// path; only the path is kept.
func getPath(s string) (string, error) {
	if !strings.HasPrefix(s, "(") {
		return s, nil
	}
	idx := strings.IndexByte(s, ')')
	if idx == -1 {
		return "", fmt.Errorf("Unable to find matching ')'")
	}
	if err := checkDiskPart(s[:idx]); err != nil {
		return "", err
	}
	return s[idx+1:], nil
}

// setKernel is _GrubImage.set_kernel: the first word is the kernel, the
// rest the arguments, split only when the value holds a space character.
func (e *Entry) setKernel(val string) error {
	var kernel, args string
	if !strings.Contains(val, " ") {
		kernel = val
	} else {
		var err error
		if kernel, args, err = unpack2(pySplitSpace(val, 1)); err != nil {
			return err
		}
	}
	path, err := getPath(kernel)
	if err != nil {
		return err
	}
	e.Kernel, e.Args, e.HasKernel = path, args, true
	return nil
}

// kernelLine is the kernel and its arguments as setKernel reads them back:
// what menu.lst's kernel and grub.cfg's linux lines say.
func (e *Entry) kernelLine() string {
	if e.Args == "" {
		return e.Kernel
	}
	return e.Kernel + " " + e.Args
}

func (e *Entry) setInitrd(val string) error {
	path, err := getPath(val)
	if err != nil {
		return err
	}
	e.Initrd, e.HasInitrd = path, true
	return nil
}

func (e *Entry) setRoot(val string) error {
	if err := checkDiskPart(val); err != nil {
		return err
	}
	e.Root = val
	return nil
}

// setDefault is _GrubConfigFile._set_default of the release: "saved" is
// 0, a number is itself, anything else 0 (4.17 warns), a negative number
// an error (4.17).
func (c *Config) setDefault(val string, rel *Release) error {
	c.RawDefault = val
	if val == "saved" {
		c.Default = 0
		return nil
	}
	n, err := pyInt(val)
	if err != nil {
		c.Default, c.defaultIsTitle = 0, true
		return nil
	}
	if n.sign < 0 {
		if rel.strictDefault {
			return fmt.Errorf("default must be non-negative number")
		}
		c.Default = 0
		return nil
	}
	c.defaultIsTitle = false
	if n.value > 1<<31 {
		c.Default = 1 << 31 // beyond any entry: pygrub falls back to 0
		return nil
	}
	c.Default = int(n.value)
	return nil
}

// resolveDefault applies pygrub's image_index and run_grub fall-backs: an
// index past the end selects entry 0.
func (c *Config) resolveDefault() {
	if len(c.Entries) == 0 {
		c.Default = -1
		return
	}
	if c.Default < 0 || c.Default >= len(c.Entries) {
		c.Default = 0
	}
}

var parenRemover = strings.NewReplacer("(", "", ")", "")
