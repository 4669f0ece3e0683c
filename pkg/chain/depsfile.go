package chain

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// DepsFileName is the file at the root of a project's default branch that,
// when present, lists the project's upstreams and overrides its FROM lines.
const DepsFileName = ".gitlab-deps"

// ParseDepsFile parses a .gitlab-deps file: one upstream project path per
// line (group/sub/project); '#' starts a comment that runs to the end of the
// line; surrounding white space and blank lines are ignored. Paths are
// returned in file order, duplicates removed. A line that is not one
// project path is an error naming the line.
func ParseDepsFile(data []byte) ([]string, error) {
	var paths []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if err := ValidateProjectPath(line); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", DepsFileName, n, err)
		}
		if !seen[line] {
			seen[line] = true
			paths = append(paths, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", DepsFileName, err)
	}
	return paths, nil
}

// ValidateProjectPath checks that p is a project path as GitLab writes them
// (group/sub/project, or one folder name of a DirSource): components of
// letters, digits, '_', '-' and '.', not starting with '-' or '.', and no
// white space, empty component or trailing slash.
func ValidateProjectPath(p string) error {
	if p == "" {
		return fmt.Errorf("empty project path")
	}
	for _, component := range strings.Split(p, "/") {
		if component == "" {
			return fmt.Errorf("%q: expected a project path like group/sub/project (empty component)", p)
		}
		if component[0] == '-' || component[0] == '.' {
			return fmt.Errorf("%q: expected a project path like group/sub/project (component %q starts with %q)", p, component, component[0])
		}
		for _, c := range component {
			if !(c == '_' || c == '-' || c == '.' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
				return fmt.Errorf("%q: expected a project path like group/sub/project (character %q)", p, c)
			}
		}
	}
	return nil
}
