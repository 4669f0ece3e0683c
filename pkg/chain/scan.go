package chain

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"
	"sync"
)

// ProjectRef names a project of a source.
type ProjectRef struct {
	Path          string // full path, group/sub/project
	ID            int64  // GitLab project id; 0 for a local folder
	DefaultBranch string // "" for an empty repository
}

// Source is where projects and their files come from: a local folder or a
// GitLab group.
type Source interface {
	// ListProjects returns every project of the source.
	ListProjects(ctx context.Context) ([]ProjectRef, error)
	// ReadFile returns a file at the root of the project's default branch;
	// an error matching fs.ErrNotExist when it is absent.
	ReadFile(ctx context.Context, p ProjectRef, name string) ([]byte, error)
}

// Registries decides which image references name images built by the
// projects of the graph.
type Registries struct {
	hosts map[string]bool
	// any: every registry host except Docker Hub maps to projects.
	any bool
}

// NewRegistries returns the registries with the given hosts (host or
// host:port, case-insensitive).
func NewRegistries(hosts ...string) *Registries {
	r := &Registries{hosts: map[string]bool{}}
	for _, h := range hosts {
		r.hosts[strings.ToLower(h)] = true
	}
	return r
}

// AnyRegistry matches every registry host named explicitly in a reference,
// that is every host but docker.io: the registries of local folders (a
// DirSource) when none are named.
func AnyRegistry() *Registries { return &Registries{any: true} }

// Match reports whether images on host are built by projects.
func (r *Registries) Match(host string) bool {
	if r == nil {
		return false
	}
	if r.any {
		return host != DockerHub
	}
	return r.hosts[strings.ToLower(host)]
}

// Hosts lists the hosts, sorted ("*" for AnyRegistry).
func (r *Registries) Hosts() []string {
	if r.any {
		return []string{"*"}
	}
	var hosts []string
	for h := range r.hosts {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	return hosts
}

// Scanner builds the dependency graph of the projects of a source.
type Scanner struct {
	Source     Source
	Registries *Registries
	// Concurrency bounds how many projects are read at the same time
	// (default 8).
	Concurrency int
	// Progress, when set, is called after each project is read.
	Progress func(done, total int)
}

// discovery is what was read of one project, before its references are
// resolved against the whole set.
type discovery struct {
	ref      ProjectRef
	source   string
	deps     []string    // from .gitlab-deps
	bases    []BaseImage // from the Containerfile or Dockerfile
	warnings []string
}

// Scan reads every project of the source and returns the graph. It fails
// with an error naming the project when a file cannot be read or a
// .gitlab-deps file is malformed; unresolvable FROM lines and upstreams
// that are not projects of the source are warnings of the graph.
func (s *Scanner) Scan(ctx context.Context) (*Graph, error) {
	refs, err := s.Source.ListProjects(ctx)
	if err != nil {
		return nil, err
	}
	found, err := s.readAll(ctx, refs)
	if err != nil {
		return nil, err
	}
	return resolve(found, s.Registries), nil
}

func (s *Scanner) readAll(ctx context.Context, refs []ProjectRef) ([]*discovery, error) {
	found := make([]*discovery, len(refs))
	var mu sync.Mutex
	done := 0
	err := forEach(ctx, len(refs), s.Concurrency, func(ctx context.Context, i int) error {
		d, err := discover(ctx, s.Source, refs[i])
		if err != nil {
			return err
		}
		found[i] = d
		if s.Progress != nil {
			mu.Lock()
			done++
			s.Progress(done, len(refs))
			mu.Unlock()
		}
		return nil
	})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return nil, err
	}
	return found, nil
}

// discover reads the files of one project in the order of precedence.
func discover(ctx context.Context, src Source, ref ProjectRef) (*discovery, error) {
	d := &discovery{ref: ref, source: SourceNone}
	readError := func(name string, err error) error {
		var apiErr *APIError
		var netErr *networkError
		if errors.As(err, &apiErr) || errors.As(err, &netErr) {
			return fmt.Errorf("project %s: %w", ref.Path, err) // names file and ref already
		}
		return fmt.Errorf("project %s: read %s: %w", ref.Path, name, err)
	}
	data, err := src.ReadFile(ctx, ref, DepsFileName)
	switch {
	case err == nil:
		deps, err := ParseDepsFile(data)
		if err != nil {
			return nil, fmt.Errorf("project %s: %w", ref.Path, err)
		}
		d.source, d.deps = SourceDepsFile, deps
		return d, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, readError(DepsFileName, err)
	}
	for _, name := range []string{SourceContainerfile, SourceDockerfile} {
		data, err := src.ReadFile(ctx, ref, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, readError(name, err)
		}
		cf := ParseContainerfile(data)
		d.source, d.bases = name, cf.Bases
		for _, w := range cf.Warnings {
			d.warnings = append(d.warnings, fmt.Sprintf("%s: %s %s", ref.Path, name, w))
		}
		return d, nil
	}
	return d, nil
}

// resolve maps every dependency to a project of the set or an external
// image, and builds the graph.
func resolve(found []*discovery, registries *Registries) *Graph {
	// GitLab's registry names a project's images by its path in lower
	// case: Infra/Base builds registry.example.com/infra/base.
	byImagePath := make(map[string]string, len(found))
	for _, d := range found {
		byImagePath[strings.ToLower(d.ref.Path)] = d.ref.Path
	}
	var warnings []string
	projects := make([]*Project, 0, len(found))
	for _, d := range found {
		p := &Project{Path: d.ref.Path, Source: d.source, Upstreams: []string{}, External: []string{}}
		warnings = append(warnings, d.warnings...)
		for _, dep := range d.deps {
			// GitLab's project paths are case-insensitive.
			project, isKnown := byImagePath[strings.ToLower(dep)]
			switch {
			case project == p.Path:
				warnings = append(warnings, fmt.Sprintf("%s: %s names the project itself; ignored", p.Path, DepsFileName))
			case !isKnown:
				warnings = append(warnings, fmt.Sprintf("%s: %s names %s, which is not a project of the scan; ignored", p.Path, DepsFileName, dep))
			default:
				p.Upstreams = append(p.Upstreams, project)
			}
		}
		for _, base := range d.bases {
			ref, err := ParseImageRef(base.Ref)
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("%s: %s line %d: %v", p.Path, d.source, base.Line, err))
				continue
			}
			if !registries.Match(ref.Host) {
				p.External = append(p.External, ref.String())
				continue
			}
			owner := longestProjectPrefix(ref.Path, byImagePath)
			switch owner {
			case "":
				warnings = append(warnings, fmt.Sprintf("%s: %s line %d: %s is on a project registry but no project of the scan has a path that prefixes %s; listed as external", p.Path, d.source, base.Line, ref, ref.Path))
				p.External = append(p.External, ref.String())
			case p.Path:
				warnings = append(warnings, fmt.Sprintf("%s: %s line %d: %s is an image of the project itself; not an upstream", p.Path, d.source, base.Line, ref))
			default:
				p.Upstreams = append(p.Upstreams, owner)
			}
		}
		p.Upstreams = sortedUnique(p.Upstreams)
		p.External = sortedUnique(p.External)
		projects = append(projects, p)
	}
	return NewGraph(projects, warnings)
}

// longestProjectPrefix returns the longest project path whose image path
// (the project path in lower case, see resolve) is the repository path or a
// prefix of it ending at a slash: GitLab registry images are group/project
// or group/project/name.
func longestProjectPrefix(repo string, byImagePath map[string]string) string {
	for candidate := repo; candidate != ""; {
		if project, ok := byImagePath[candidate]; ok {
			return project
		}
		i := strings.LastIndexByte(candidate, '/')
		if i < 0 {
			break
		}
		candidate = candidate[:i]
	}
	return ""
}

func sortedUnique(s []string) []string {
	sort.Strings(s)
	return slices.Compact(s)
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// forEach runs fn for 0..n-1 with at most concurrency at a time; the first
// error cancels the rest and is returned. Scan reads the projects with it,
// and hooks sync (PlanHooks, HookPlan.Apply) goes through them with it.
func forEach(ctx context.Context, n, concurrency int, fn func(context.Context, int) error) error {
	if concurrency <= 0 {
		concurrency = 8
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, n)
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
loop:
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if errs[i] = fn(ctx, i); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	// The first error that is not a cancellation caused by another one.
	var first error
	for _, err := range errs {
		if err != nil && (first == nil || (errors.Is(first, context.Canceled) && !errors.Is(err, context.Canceled))) {
			first = err
		}
	}
	return first
}
