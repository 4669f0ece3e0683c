package pygrubfix

import "strings"

// parseLegacy is GrubConf.GrubConfigFile.parse: grub-legacy menu.lst and
// grub.conf.
func parseLegacy(lines []string, rel *Release) (*Config, error) {
	cfg := &Config{}
	var img []string
	inEntry := false
	title := ""
	lastLine := 0
	add := func() error {
		e := Entry{Lines: img}
		for _, line := range img {
			com, arg := splitCommand(line)
			attr := ""
			switch com {
			case "root", "rootnoverify":
				attr = attrRoot
			case "kernel":
				attr = attrKernel
			case "initrd":
				attr = attrInitrd
			}
			if err := e.set(attr, pyStrip(arg)); err != nil {
				return &ParseError{lastLine, err.Error()}
			}
		}
		e.Title = pyStrip(title)
		cfg.Entries = append(cfg.Entries, e)
		return nil
	}
	for n, raw := range lines {
		l := pyStrip(raw)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "title") {
			if inEntry {
				if err := add(); err != nil {
					return nil, err
				}
			}
			img, inEntry, title = []string{}, true, pySlice(l, 6)
			lastLine = n + 1
			continue
		}
		if inEntry {
			img = append(img, l)
			lastLine = n + 1
			continue
		}
		com, arg := splitCommand(l)
		switch com {
		case "default":
			if err := cfg.setDefault(pyStrip(arg), rel); err != nil {
				return nil, &ParseError{n + 1, err.Error()}
			}
		case "splashimage":
			if _, err := getPath(pyStrip(arg)); err != nil {
				return nil, &ParseError{n + 1, err.Error()}
			}
		}
	}
	// pygrub adds the last entry only when it has lines ("if img:").
	if inEntry && len(img) > 0 {
		if err := add(); err != nil {
			return nil, err
		}
	}
	cfg.resolveDefault()
	return cfg, nil
}
