package pygrubfix

import "strings"

// grub2 image commands pygrub understands inside a menuentry; the others
// are ignored (echo, insmod, search) or warned about and ignored.
const (
	attrRoot   = "root"
	attrKernel = "kernel"
	attrInitrd = "initrd"
)

func grub2ImageCommand(com string, rel *Release) string {
	switch com {
	case "set:root":
		return attrRoot
	case "linux":
		return attrKernel
	case "initrd":
		return attrInitrd
	case "linux16":
		if rel.linux16 {
			return attrKernel
		}
	case "initrd16":
		if rel.linux16 {
			return attrInitrd
		}
	}
	return ""
}

// grub2HandleSet is GrubConf.grub2_handle_set: "set name=value" becomes
// the command "set:name" with value unquoted when it is wrapped in quotes.
func grub2HandleSet(arg string) (string, string, error) {
	name, val, err := unpack2(grubSplit(arg, 2))
	if err != nil {
		return "", "", err
	}
	// re.match("([\"\'])(.*)\\1", val): an opening quote and the last
	// matching quote after it.
	if val != "" && (val[0] == '"' || val[0] == '\'') {
		if end := strings.LastIndexByte(val[1:], val[0]); end >= 0 {
			val = val[1 : 1+end]
		}
	}
	return "set:" + name, val, nil
}

// parseGrub2 is Grub2ConfigFile.parse of the release.
func parseGrub2(lines []string, rel *Release) (*Config, error) {
	cfg := &Config{}
	inFunction := false
	var img []string
	inEntry := false
	title := ""
	menuLevel := 0
	for n, raw := range lines {
		lineNo := n + 1
		l := pyStrip(raw)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "function") {
			inFunction = true
			continue
		}
		if inFunction {
			if strings.HasPrefix(l, "}") {
				inFunction = false
			}
			continue
		}
		// The regex needs "menuentry " at the start; skip it for other lines.
		if m := titleMatch(rel, l); m != nil {
			if inEntry {
				return nil, &ParseError{lineNo, "syntax error: cannot nest menuentry"}
			}
			img, inEntry, title = nil, true, m[1]
			continue
		}
		if rel.submenus && strings.HasPrefix(l, "submenu") {
			menuLevel++
			continue
		}
		if strings.HasPrefix(l, "}") {
			if !inEntry {
				if rel.submenus && menuLevel > 0 {
					menuLevel--
					continue
				}
				return nil, &ParseError{lineNo, "syntax error: closing brace without menuentry"}
			}
			entry, err := newGrub2Entry(title, img, rel)
			if err != nil {
				return nil, &ParseError{lineNo, err.Error()}
			}
			cfg.Entries = append(cfg.Entries, entry)
			img, inEntry = nil, false
			continue
		}
		if inEntry {
			img = append(img, l)
			continue
		}
		com, arg := splitCommand(l)
		if com == "set" {
			var err error
			if com, arg, err = grub2HandleSet(arg); err != nil {
				return nil, &ParseError{lineNo, err.Error()}
			}
		}
		switch com {
		case "set:default":
			val := pyStrip(arg)
			cfg.defaultSaved = val == "${saved_entry}"
			if rel.savedEntry && (val == "${saved_entry}" || val == "${next_entry}") {
				val = "0"
			}
			if err := cfg.setDefault(val, rel); err != nil {
				return nil, &ParseError{lineNo, err.Error()}
			}
		}
	}
	if inEntry {
		return nil, &ParseError{len(lines), "syntax error: end of file with open menuentry"}
	}
	cfg.resolveDefault()
	return cfg, nil
}

func splitCommand(l string) (string, string) {
	parts := grubExactSplit(l, 2)
	return parts[0], parts[1]
}

// newGrub2Entry is Grub2Image(title, lines).
func newGrub2Entry(title string, lines []string, rel *Release) (Entry, error) {
	e := Entry{Lines: lines}
	for _, line := range lines {
		com, arg := splitCommand(line)
		if com == "set" {
			var err error
			if com, arg, err = grub2HandleSet(arg); err != nil {
				return e, err
			}
		}
		if err := e.set(grub2ImageCommand(com, rel), pyStrip(arg)); err != nil {
			return e, err
		}
	}
	e.Title = pyStrip(title)
	return e, nil
}

func (e *Entry) set(attr, val string) error {
	switch attr {
	case attrRoot:
		return e.setRoot(val)
	case attrKernel:
		return e.setKernel(val)
	case attrInitrd:
		return e.setInitrd(val)
	}
	return nil
}

func titleMatch(rel *Release, l string) []string {
	if !strings.HasPrefix(l, "menuentry ") {
		return nil
	}
	return rel.title.FindStringSubmatch(l)
}
