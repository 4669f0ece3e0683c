package chain

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// BaseImage is one image a Containerfile builds on: the reference of a FROM
// line after ARG substitution, neither scratch nor an earlier stage.
type BaseImage struct {
	Line int    // line of the FROM instruction (1-based)
	Ref  string // as written, after ARG substitution
}

// Containerfile is what matters of a Containerfile (or Dockerfile) for the
// dependency graph.
type Containerfile struct {
	Bases []BaseImage
	// Warnings name every FROM that could not be resolved (an ARG without
	// default, a malformed line); such a FROM is not in Bases.
	Warnings []string
}

var (
	directiveRE = regexp.MustCompile(`^#[ \t]*([A-Za-z][A-Za-z0-9_-]*)[ \t]*=[ \t]*(.*?)[ \t]*$`)
	// A here-document opens with a word that starts with << (after an
	// optional file descriptor), as BuildKit reads it: $((1<<X)) and
	// "a <<b" are none. The rest of the word, quotes removed, is the
	// terminator (BuildKit takes every character but '<': END-PY and
	// 'x.conf' are words too).
	heredocRE = regexp.MustCompile(`^[0-9]*<<(-?)([^<]+)$`)
)

// ParseContainerfile reads the FROM lines of a Containerfile the way
// BuildKit's parser does: parser directives (escape), line continuations,
// comments (also inside continued instructions), here-documents, global
// ARGs declared before the first FROM and substituted in FROM (${X}, $X,
// ${X:-default}, ${X-default}, ${X:+alt}, ${X+alt}), --platform and other
// flags, AS names, references to earlier stages and scratch.
//
// It never fails: what it cannot resolve becomes a warning that names the
// line.
func ParseContainerfile(data []byte) *Containerfile {
	cf := &Containerfile{}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), len(data)+1)
	for sc.Scan() {
		lines = append(lines, strings.TrimSuffix(sc.Text(), "\r"))
	}

	escape := byte('\\')
	i := 0
	// Parser directives: only at the very top, before any comment, blank
	// line or instruction. BuildKit strips leading white space first.
	seen := map[string]bool{}
	for ; i < len(lines); i++ {
		m := directiveRE.FindStringSubmatch(strings.TrimLeft(lines[i], " \t"))
		if m == nil {
			break
		}
		name := strings.ToLower(m[1])
		if name != "syntax" && name != "escape" && name != "check" {
			break // an unknown directive is a comment and ends the directives
		}
		if seen[name] {
			cf.warnf(i+1, "parser directive %q given twice", name)
			break
		}
		seen[name] = true
		if name == "escape" {
			switch m[2] {
			case "\\":
				escape = '\\'
			case "`":
				escape = '`'
			default:
				cf.warnf(i+1, "escape directive %q: expected \\ or `", m[2])
			}
		}
	}
	// BuildKit's line continuation: the escape character last on a line,
	// alone or after a character that is not the escape character (a
	// line ending in an escaped escape, C:\\, is not continued).
	q := regexp.QuoteMeta(string(escape))
	continuation := regexp.MustCompile(`(?:^|[^` + q + `])(` + q + `)[ \t]*$`)

	p := &fromParser{cf: cf, escape: escape, args: map[string]argValue{}, stages: map[string]bool{}}
	var logical strings.Builder
	start := 0
	inInstruction := false
	for ; i < len(lines); i++ {
		line := lines[i]
		trimmed := strings.TrimLeft(line, " \t")
		if trimmed == "" || trimmed[0] == '#' {
			// Blank lines and comments end nothing: inside a continued
			// instruction they are dropped, as BuildKit does.
			continue
		}
		if !inInstruction {
			start = i + 1
			inInstruction = true
			logical.Reset()
		}
		if loc := continuation.FindStringSubmatchIndex(line); loc != nil {
			logical.WriteString(line[:loc[2]])
			continue
		}
		logical.WriteString(line)
		inInstruction = false
		i = p.instruction(start, logical.String(), lines, i)
	}
	if inInstruction {
		p.instruction(start, logical.String(), lines, len(lines)-1)
	}
	return cf
}

func (cf *Containerfile) warnf(line int, format string, args ...any) {
	cf.Warnings = append(cf.Warnings, fmt.Sprintf("line %d: ", line)+fmt.Sprintf(format, args...))
}

type argValue struct {
	value string
	set   bool // false: declared without a default
}

type fromParser struct {
	cf        *Containerfile
	escape    byte
	args      map[string]argValue // global ARGs, declared before the first FROM
	stages    map[string]bool     // names of earlier stages, lower case
	afterFrom bool
}

// instruction handles one logical line that started on line start and
// ended on the physical line last; it returns the index of the last
// physical line it consumed (here-documents extend an instruction).
func (p *fromParser) instruction(start int, text string, lines []string, last int) int {
	text = strings.TrimSpace(text)
	keyword, rest, _ := strings.Cut(text, " ")
	if k, r, ok := strings.Cut(text, "\t"); ok && len(k) < len(keyword) {
		keyword, rest = k, r
	}
	keyword = strings.ToUpper(keyword)
	rest = strings.TrimSpace(rest)
	switch keyword {
	case "ARG":
		if !p.afterFrom {
			p.globalArg(start, rest)
		}
	case "FROM":
		p.afterFrom = true
		p.from(start, rest)
	case "ONBUILD":
		// BuildKit unwraps ONBUILD before it asks whether an instruction
		// can hold a here-document: ONBUILD RUN <<EOF opens one.
		if f := strings.Fields(rest); len(f) > 0 {
			switch strings.ToUpper(f[0]) {
			case "RUN", "COPY", "ADD":
				return p.instruction(start, rest, lines, last)
			}
		}
	case "RUN", "COPY", "ADD":
		end, ok := skipHeredocs(rest, lines, last)
		if !ok {
			p.cf.warnf(start, "%s: here-document not terminated; its lines are read as instructions", keyword)
			return last
		}
		return end
	}
	return last
}

// skipHeredocs consumes the bodies of the here-documents an instruction
// opens, so that their lines are never read as instructions.
func skipHeredocs(args string, lines []string, last int) (int, bool) {
	// BuildKit splits the instruction into shell words with \ as the
	// escape, whatever the escape directive says.
	words, _ := splitWords(args, '\\')
	for _, w := range words {
		m := heredocRE.FindStringSubmatch(w)
		if m == nil {
			continue
		}
		word, ok := unquoteHeredocWord(m[2])
		if !ok {
			continue
		}
		stripTabs := m[1] == "-"
		terminated := false
		for last+1 < len(lines) && !terminated {
			last++
			body := lines[last]
			if stripTabs {
				body = strings.TrimLeft(body, "\t")
			}
			terminated = body == word
		}
		if !terminated {
			return 0, false
		}
	}
	return last, true
}

// unquoteHeredocWord removes the shell quotes of a here-document word
// ("EOF", 'EOF', E"O"F); false when a quote is not closed or nothing is
// left.
func unquoteHeredocWord(w string) (string, bool) {
	var out strings.Builder
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c != '"' && c != '\'' {
			out.WriteByte(c)
			continue
		}
		end := strings.IndexByte(w[i+1:], c)
		if end < 0 {
			return "", false
		}
		out.WriteString(w[i+1 : i+1+end])
		i += end + 1
	}
	return out.String(), out.Len() > 0
}

func (p *fromParser) globalArg(line int, rest string) {
	words, err := splitWords(rest, p.escape)
	if err != nil {
		p.cf.warnf(line, "ARG %s: %v", rest, err)
		return
	}
	for _, word := range words {
		name, value, hasValue := strings.Cut(word, "=")
		if !validArgName(name) {
			p.cf.warnf(line, "ARG %s: %q is not a valid name", rest, name)
			continue
		}
		if !hasValue {
			if _, declared := p.args[name]; !declared {
				p.args[name] = argValue{}
			}
			continue
		}
		expanded, err := expandWord(value, p.args, p.escape)
		if err != nil {
			// The ARG is declared, but its default cannot be known here.
			p.args[name] = argValue{}
			continue
		}
		p.args[name] = argValue{value: expanded, set: true}
	}
}

func (p *fromParser) from(line int, rest string) {
	words, err := splitWords(rest, p.escape)
	if err != nil {
		p.cf.warnf(line, "FROM %s: %v", rest, err)
		return
	}
	var operands []string
	for _, w := range words {
		if strings.HasPrefix(w, "--") && len(operands) == 0 {
			continue // --platform=... and any other flag
		}
		operands = append(operands, w)
	}
	var stage string
	switch {
	case len(operands) == 1:
	case len(operands) == 3 && strings.EqualFold(operands[1], "AS"):
		stage = strings.ToLower(operands[2])
	case len(operands) == 0:
		p.cf.warnf(line, "FROM without an image")
		return
	default:
		p.cf.warnf(line, "FROM %s: expected FROM [--platform=...] IMAGE [AS NAME]", rest)
		return
	}
	defer func() {
		if stage != "" {
			p.stages[stage] = true
		}
	}()
	image, err := expandWord(operands[0], p.args, p.escape)
	if err != nil {
		p.cf.warnf(line, "FROM %s: %v", operands[0], err)
		return
	}
	if image == "" {
		p.cf.warnf(line, "FROM %s: the image name is empty after substitution", operands[0])
		return
	}
	if strings.EqualFold(image, "scratch") || p.stages[strings.ToLower(image)] {
		return
	}
	p.cf.Bases = append(p.cf.Bases, BaseImage{Line: line, Ref: image})
}

func validArgName(name string) bool {
	if name == "" {
		return false
	}
	for i, c := range name {
		if c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}

// splitWords splits on white space outside quotes, keeping quotes and
// escapes for expandWord.
func splitWords(s string, escape byte) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			cur.WriteByte(c)
			if c == escape && quote == '"' && i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			} else if c == quote {
				quote = 0
			}
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			inWord = true
			cur.WriteByte(c)
			if c == escape && i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			} else if c == '"' || c == '\'' {
				quote = c
			}
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// expandWord substitutes variables in one word and removes its quotes, as
// the Dockerfile shell lexer does. A variable that has no value (declared
// without a default, or not declared at all) is an error naming it, unless
// a modifier supplies the value.
func expandWord(word string, args map[string]argValue, escape byte) (string, error) {
	var out strings.Builder
	for i := 0; i < len(word); i++ {
		c := word[i]
		switch {
		case c == escape && i+1 < len(word):
			i++
			out.WriteByte(word[i])
		case c == '\'':
			end := strings.IndexByte(word[i+1:], '\'')
			if end < 0 {
				return "", fmt.Errorf("unterminated ' quote")
			}
			out.WriteString(word[i+1 : i+1+end])
			i += end + 1
		case c == '"':
			i++
			for ; i < len(word) && word[i] != '"'; i++ {
				switch {
				case word[i] == escape && i+1 < len(word) && strings.IndexByte("\"$`\\", word[i+1]) >= 0:
					i++
					out.WriteByte(word[i])
				case word[i] == '$':
					value, n, err := expandVar(word[i:], args, escape)
					if err != nil {
						return "", err
					}
					out.WriteString(value)
					i += n - 1
				default:
					out.WriteByte(word[i])
				}
			}
			if i >= len(word) {
				return "", fmt.Errorf("unterminated \" quote")
			}
		case c == '$':
			value, n, err := expandVar(word[i:], args, escape)
			if err != nil {
				return "", err
			}
			out.WriteString(value)
			i += n - 1
		default:
			out.WriteByte(c)
		}
	}
	return out.String(), nil
}

// expandVar expands the variable reference at the start of s ("$X",
// "${X}", "${X:-word}", ...) and returns its value and length.
func expandVar(s string, args map[string]argValue, escape byte) (string, int, error) {
	if len(s) < 2 {
		return "$", 1, nil
	}
	if s[1] != '{' {
		n := 1
		for n < len(s) && isNameByte(s[n], n == 1) {
			n++
		}
		if n == 1 {
			return "$", 1, nil // a lone dollar is literal
		}
		value, err := lookupArg(s[1:n], args)
		return value, n, err
	}
	// ${...}: find the matching brace.
	depth, end := 0, -1
	for j := 1; j < len(s) && end < 0; j++ {
		switch {
		case s[j] == escape:
			j++
		case s[j] == '{':
			depth++
		case s[j] == '}':
			depth--
			if depth == 0 {
				end = j
			}
		}
	}
	if end < 0 {
		return "", 0, fmt.Errorf("%q: missing }", s)
	}
	body := s[2:end]
	n := 0
	for n < len(body) && isNameByte(body[n], n == 0) {
		n++
	}
	name, op := body[:n], body[n:]
	if name == "" {
		return "", 0, fmt.Errorf("${%s}: expected a variable name", body)
	}
	value, set := args[name].value, args[name].set
	modifier := func(prefix string) (string, bool) {
		if strings.HasPrefix(op, prefix) {
			return op[len(prefix):], true
		}
		return "", false
	}
	if op == "" {
		v, err := lookupArg(name, args)
		return v, end + 1, err
	}
	if word, ok := modifier(":-"); ok {
		if set && value != "" {
			return value, end + 1, nil
		}
		v, err := expandWord(word, args, escape)
		return v, end + 1, err
	}
	if word, ok := modifier(":+"); ok {
		if set && value != "" {
			v, err := expandWord(word, args, escape)
			return v, end + 1, err
		}
		return "", end + 1, nil
	}
	if word, ok := modifier("-"); ok {
		if set {
			return value, end + 1, nil
		}
		v, err := expandWord(word, args, escape)
		return v, end + 1, err
	}
	if word, ok := modifier("+"); ok {
		if set {
			v, err := expandWord(word, args, escape)
			return v, end + 1, err
		}
		return "", end + 1, nil
	}
	if strings.HasPrefix(op, ":?") || strings.HasPrefix(op, "?") {
		if set && (value != "" || op[0] == '?') {
			return value, end + 1, nil
		}
		return "", 0, fmt.Errorf("ARG %s is required and has no default (it is set with --build-arg)", name)
	}
	return "", 0, fmt.Errorf("${%s}: unsupported substitution %q", body, op)
}

func lookupArg(name string, args map[string]argValue) (string, error) {
	arg, declared := args[name]
	switch {
	case !declared:
		return "", fmt.Errorf("$%s is not declared by an ARG before the first FROM", name)
	case !arg.set:
		return "", fmt.Errorf("ARG %s has no default (it is set with --build-arg)", name)
	}
	return arg.value, nil
}

func isNameByte(c byte, first bool) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9')
}
