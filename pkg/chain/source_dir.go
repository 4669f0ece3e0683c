package chain

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// DirSource is the local mode: every folder under Root holding a
// Containerfile, Dockerfile or .gitlab-deps is a project whose path is the
// folder's path relative to Root. Hidden folders (.git) are not searched
// and symbolic links to folders are not followed.
type DirSource struct {
	Root string
	// Warnings collects folders that were skipped, and why.
	Warnings []string
}

var projectFiles = []string{DepsFileName, SourceContainerfile, SourceDockerfile}

// ListProjects walks Root.
func (s *DirSource) ListProjects(ctx context.Context) ([]ProjectRef, error) {
	st, err := os.Stat(s.Root)
	if err != nil {
		return nil, fmt.Errorf("DirSource.Root %s: %w", s.Root, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("DirSource.Root %s: not a folder", s.Root)
	}
	// WalkDir does not enter a root that is a symbolic link: walk what it
	// names (links below the root stay unfollowed).
	walkRoot, err := filepath.EvalSymlinks(s.Root)
	if err != nil {
		return nil, fmt.Errorf("DirSource.Root %s: %w", s.Root, err)
	}
	var refs []ProjectRef
	err = filepath.WalkDir(walkRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("DirSource.Root %s: %w", s.Root, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(walkRoot, path)
		if rel != "." && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if !holdsProjectFile(path) {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if rel == "." {
			s.Warnings = append(s.Warnings, fmt.Sprintf("DirSource.Root %s: the folder itself holds a project file; only its subfolders are projects", s.Root))
			return nil
		}
		if err := ValidateProjectPath(rel); err != nil {
			s.Warnings = append(s.Warnings, fmt.Sprintf("DirSource.Root %s: folder skipped: %v", s.Root, err))
			return nil
		}
		refs = append(refs, ProjectRef{Path: rel, DefaultBranch: "local"})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].Path < refs[j].Path })
	return refs, nil
}

func holdsProjectFile(dir string) bool {
	for _, name := range projectFiles {
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil && !st.IsDir() {
			return true
		}
	}
	return false
}

// ReadFile reads name in the project's folder.
func (s *DirSource) ReadFile(ctx context.Context, p ProjectRef, name string) ([]byte, error) {
	path := filepath.Join(s.Root, filepath.FromSlash(p.Path), name)
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fs.ErrNotExist
		}
		return nil, err // *PathError names the file
	}
	return data, nil
}
