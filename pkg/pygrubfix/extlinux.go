package pygrubfix

import "strings"

// parseExtlinux is ExtLinuxConf.ExtLinuxConfigFile.parse: an entry starts
// at a "label" line; the default names a label, else entry 0 is booted.
// Its loop has the shape of parseLegacy's on purpose: each follows its own
// pygrub parser line by line (they differ in case folding, in what starts
// an entry and in where the title comes from), so that each can be read
// against its original.
func parseExtlinux(lines []string) (*Config, error) {
	cfg := &Config{}
	var img []string
	hasDefault := false // pygrub's default starts as the number 0, equal to no label
	lastLine := 0
	add := func() error {
		e, err := newExtlinuxEntry(img)
		if err != nil {
			return &ParseError{lastLine, err.Error()}
		}
		cfg.Entries = append(cfg.Entries, e)
		return nil
	}
	for n, raw := range lines {
		l := pyStrip(raw)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(pyLower(l), "label") {
			if len(img) > 0 {
				if err := add(); err != nil {
					return nil, err
				}
			}
			img, lastLine = []string{l}, n+1
			continue
		}
		if len(img) > 0 {
			img, lastLine = append(img, l), n+1
			continue
		}
		com, arg := splitCommand(l)
		if pyLower(com) == "default" {
			cfg.RawDefault, hasDefault = pyStrip(arg), true
		}
	}
	if len(img) > 0 {
		if err := add(); err != nil {
			return nil, err
		}
	}
	cfg.Default = 0
	for i, e := range cfg.Entries {
		if hasDefault && e.Title == cfg.RawDefault {
			cfg.Default = i
			break
		}
	}
	cfg.resolveDefault()
	return cfg, nil
}

// unquote is re.sub('^"(.+)"$', r"\1", s).
func unquote(s string) string {
	if len(s) >= 3 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// newExtlinuxEntry is ExtLinuxImage(lines): label, kernel and append, with
// initrd= taken out of the append line and mboot.c32 (Xen) unwrapped.
func newExtlinuxEntry(lines []string) (Entry, error) {
	e := Entry{Lines: lines}
	for _, line := range lines {
		parts := grubExactSplit(line, 2)
		com, arg := pyLower(parts[0]), parts[1]
		skip := false
		if com == "append" && e.HasKernel {
			if strings.HasSuffix(e.Kernel, "mboot.c32") {
				var kernel, initrd string
				modules := strings.Split(arg, "---")
				switch len(modules) {
				case 3:
					kernel, initrd = modules[1], modules[2]
				case 2:
					kernel, initrd = modules[0], modules[1]
				}
				// ExtLinuxImage keeps the mboot.c32 kernel when no module
				// names one.
				if kernel != "" {
					if err := e.setExtlinuxKernel(pyStrip(kernel)); err != nil {
						return e, err
					}
				}
				if initrd != "" {
					e.Initrd, e.HasInitrd = pyStrip(initrd), true
				}
				skip = true
			} else if strings.Contains(arg, "initrd=") {
				for _, a := range strings.Split(pyStrip(arg), " ") {
					if strings.HasPrefix(pyLower(a), "initrd=") {
						e.Initrd, e.HasInitrd = strings.ReplaceAll(a, "initrd=", ""), true
						arg = strings.ReplaceAll(arg, a, "")
					}
				}
			}
		}
		if skip {
			continue
		}
		val := unquote(pyStrip(arg))
		switch com {
		case "label":
			e.Title = val
		case "kernel":
			if err := e.setExtlinuxKernel(val); err != nil {
				return e, err
			}
		case "append":
			e.Args = val
		}
	}
	return e, nil
}

// setExtlinuxKernel is ExtLinuxImage.set_kernel: no device prefix, and a
// kernel line without a space clears the arguments. A value of white
// space only (`kernel " "`) makes pygrub fail.
func (e *Entry) setExtlinuxKernel(val string) error {
	if !strings.Contains(val, " ") {
		e.Kernel, e.Args, e.HasKernel = val, "", true
		return nil
	}
	k, args, err := unpack2(pySplitSpace(val, 1))
	if err != nil {
		return err
	}
	e.Kernel, e.Args, e.HasKernel = k, args, true
	return nil
}
