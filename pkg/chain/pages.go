package chain

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opsctl/opsctl/pkg/chain/picture"
)

// The receiver's web pages: GET / lists the runs, GET /ui/runs/{id} draws
// one run. They are read-only, like GET /runs, and live beside the JSON
// API rather than on its URLs, so that JSON clients (chain status) see no
// change. Everything a page shows that came from GitLab or a webhook goes
// through html/template (or, for the drawing, the picture package's
// escaping); the pages load nothing but the binary's own style sheet and
// script, under a Content-Security-Policy that allows nothing else.

// RunPagePath is the path of a run's page on the receiver.
func RunPagePath(id string) string { return "/ui/runs/" + url.PathEscape(id) }

// pageCSP is the Content-Security-Policy of every page: the script and the
// style sheet from the receiver itself, the pages' own fetches, nothing
// inline, no frames, no forms, no base URL.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Seconds between two looks at a page for changes (the script's polling,
// or the refresh of a browser without JavaScript). The runs page reads
// many runs: less often.
const (
	runPageRefresh  = 5
	runsPageRefresh = 10
	// runsPageSize is the number of runs the runs page shows; older ones
	// are a link away.
	runsPageSize = 50
)

//go:embed web
var webFiles embed.FS

var pageTemplates = template.Must(template.New("").ParseFS(webFiles, "web/*.html"))

// staticFiles are the files under /ui/static/, with their types.
var staticFiles = map[string]string{
	"style.css": "text/css; charset=utf-8",
	"live.js":   "text/javascript; charset=utf-8",
}

// pageHeaders are set on every page and static file.
func pageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

func (rc *Receiver) staticFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ctype, ok := staticFiles[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	data, err := fs.ReadFile(webFiles, "web/"+name)
	if err != nil {
		pageError(w, err.Error())
		return
	}
	pageHeaders(w.Header())
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
}

// pageError answers a page that cannot be made with one line of plain
// text, under the pages' headers.
func pageError(w http.ResponseWriter, msg string) {
	pageHeaders(w.Header())
	http.Error(w, msg, http.StatusInternalServerError)
}

// page is what the layout of every page needs.
type page struct {
	Title, Heading string
	// Refresh is the number of seconds between two looks for changes.
	Refresh int
	// JSON is the JSON endpoint with the same content.
	JSON string
}

// writePage renders the template name with data. tag is the entity tag of
// what the page shows: a request that has it already gets 304, so that
// the pages' polling costs little while nothing changes.
func writePage(w http.ResponseWriter, r *http.Request, code int, name, tag string, data any) {
	pageHeaders(w.Header())
	w.Header().Set("Cache-Control", "no-cache")
	if tag != "" {
		etag := `"` + tag + `"`
		w.Header().Set("ETag", etag)
		if code == http.StatusOK && r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	body, err := renderPage(name, data)
	if err != nil {
		pageError(w, err.Error())
		return
	}
	writeBody(w, code, body)
}

// renderPage renders the template name with data.
func renderPage(name string, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := pageTemplates.ExecuteTemplate(&b, name, data); err != nil {
		return nil, fmt.Errorf("rendering the page: %w", err)
	}
	return b.Bytes(), nil
}

// writeBody answers a rendered page (its headers set by the caller).
func writeBody(w http.ResponseWriter, code int, body []byte) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(body)
}

// pageTag is an entity tag of v (what a page is made of) and the page's
// own version: the binary's templates and scripts.
func pageTag(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(append(data, pagesVersion...))
	return hex.EncodeToString(sum[:12])
}

// pagesVersion changes the entity tags when the templates change.
var pagesVersion = func() []byte {
	h := sha256.New()
	fs.WalkDir(webFiles, "web", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := fs.ReadFile(webFiles, path)
			h.Write(data)
		}
		return nil
	})
	return h.Sum(nil)
}()

// runRow is one run of the runs page.
type runRow struct {
	ID, Page, Roots, Started, Status, StartedBy string
	Done, Failed, Projects                      int
}

type runsPage struct {
	page
	Runs  []runRow
	Older string
}

func countSteps(r *Run) (done, failed int) {
	for _, s := range r.Steps {
		if s == nil {
			continue
		}
		switch s.State {
		case StepSucceeded:
			done++
		case StepFailed, StepCanceled:
			failed++
		}
	}
	return done, failed
}

// runsPage is GET /: the newest runs, and ?before=RUN for older ones.
func (rc *Receiver) runsPage(w http.ResponseWriter, r *http.Request) {
	before := r.URL.Query().Get("before")
	p := runsPage{page: page{Title: "chain runs", Heading: "runs", Refresh: runsPageRefresh, JSON: "/runs"}}
	if before != "" && !ValidRunID(before) {
		p.Heading = "no such page"
		writePage(w, r, http.StatusBadRequest, "runs", "", p)
		return
	}
	runs, err := rc.Engine.RunsBefore(before, runsPageSize)
	if err != nil {
		pageError(w, err.Error())
		return
	}
	for _, run := range runs.Runs {
		done, failed := countSteps(run)
		p.Runs = append(p.Runs, runRow{ID: run.ID, Page: RunPagePath(run.ID), Roots: strings.Join(run.Roots, ", "),
			Started: run.Created.UTC().Format("2006-01-02 15:04:05"), Status: string(run.Status), StartedBy: run.StartedBy,
			Done: done, Failed: failed, Projects: len(run.Steps)})
	}
	if runs.Next != "" {
		p.Older = "/?" + url.Values{"before": {runs.Next}}.Encode()
	}
	if before != "" {
		p.Heading = "runs before " + before
	}
	writePage(w, r, http.StatusOK, "runs", pageTag(p), p)
}

// stepRow is one project of a run page.
type stepRow struct {
	Project    string
	Wave       int
	State      picture.State
	Word       string
	PipelineID int64
	Link       string
	Reason     string
}

type runView struct {
	ID, Status, Started, StartedBy, Finished string
	Done, Failed, Projects                   int
	SVG                                      template.HTML
	Steps                                    []stepRow
}

type runPage struct {
	page
	Run     *runView
	Missing string
}

// stateWords are the run page's words for the picture's states (as the
// picture's legend says them).
var stateWords = map[picture.State]string{
	picture.StateStopped: "stopped: upstream failed",
}

// runPage is GET /ui/runs/{id}: the run's plan drawn with each project's
// state and a link to its pipeline, and the same as a table.
func (rc *Receiver) runPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	run, err := rc.Engine.Run(id)
	if err != nil {
		pageError(w, err.Error())
		return
	}
	p := runPage{page: page{Title: "chain run " + id, Heading: "run " + id, Refresh: runPageRefresh, JSON: "/runs/" + url.PathEscape(id)}}
	if run == nil {
		p.Missing = truncate(id, 80)
		p.Heading = "no run " + p.Missing
		p.JSON = "/runs"
		writePage(w, r, http.StatusNotFound, "run", "", p)
		return
	}
	tag := pageTag(struct {
		Run    *Run
		GitLab string
	}{run, rc.GitLabURL})
	if r.Header.Get("If-None-Match") == `"`+tag+`"` {
		writePage(w, r, http.StatusOK, "run", tag, nil)
		return
	}
	body, err := rc.runPages.get(r.Context(), id, tag, func() ([]byte, error) {
		view, err := rc.runView(run)
		if err != nil {
			return nil, fmt.Errorf("drawing the run: %w", err)
		}
		p.Title = fmt.Sprintf("chain run %s: %s", run.ID, run.Status)
		p.Run = view
		return renderPage("run", p)
	})
	switch {
	case errors.Is(err, errPageBusy):
		pageHeaders(w.Header())
		w.Header().Set("Retry-After", "5")
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	case err != nil:
		pageError(w, err.Error())
		return
	}
	pageHeaders(w.Header())
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", `"`+tag+`"`)
	writeBody(w, http.StatusOK, body)
}

// Drawing a run page costs in proportion to the run (a run of 10,000
// projects: about a second of a core and tens of MB), and the pages are
// open to whoever reaches the receiver. So a run page is drawn once for
// each state of the run (its entity tag) and kept, for the pages that poll
// it and for anyone else who asks, and at most maxPageDraws pages are
// drawn at once: other requests wait for a turn, up to pageDrawWait, and
// at most maxPageQueue of them (each holds its run meanwhile); any more
// are answered 503 at once.
const (
	maxPageDraws = 2
	maxPageQueue = 8
	pageDrawWait = 10 * time.Second
	// maxCachedPages bounds the bytes of run pages kept (a page of 10,000
	// projects is about 13 MB); a bigger page is drawn for each request.
	maxCachedPages = 32 << 20
)

// errPageBusy: no turn to draw a page came within pageDrawWait, or too
// many requests wait for one.
var errPageBusy = errors.New("the receiver is busy drawing other run pages; try again in a few seconds")

// runPageCache holds the run pages drawn last, one per run, and the turns
// to draw one. Its zero value is ready.
type runPageCache struct {
	mu sync.Mutex
	// queue holds a place for each request drawing or waiting to draw,
	// turns one for each drawing.
	queue, turns chan struct{}
	pages        map[string]cachedPage
	order        []string // run ids, oldest first
	bytes        int
}

type cachedPage struct {
	tag  string
	body []byte
}

// cached returns the page of run id in the state tag when it is kept.
func (c *runPageCache) cached(id, tag string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	if p, ok := c.pages[id]; ok && p.tag == tag {
		return p.body
	}
	return nil
}

// lanes returns the queue and the turns (see runPageCache).
func (c *runPageCache) lanes() (queue, turns chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	return c.queue, c.turns
}

func (c *runPageCache) init() {
	if c.turns == nil {
		c.queue = make(chan struct{}, maxPageQueue+maxPageDraws)
		c.turns = make(chan struct{}, maxPageDraws)
		c.pages = map[string]cachedPage{}
	}
}

// get returns the page of run id in the state tag: the one kept, or one
// draw makes when a turn comes (the queue full, ctx ended or no turn
// within pageDrawWait: errPageBusy).
func (c *runPageCache) get(ctx context.Context, id, tag string, draw func() ([]byte, error)) ([]byte, error) {
	if body := c.cached(id, tag); body != nil {
		return body, nil
	}
	queue, turns := c.lanes()
	select {
	case queue <- struct{}{}:
	default:
		return nil, errPageBusy
	}
	defer func() { <-queue }()
	wait := time.NewTimer(pageDrawWait)
	defer wait.Stop()
	select {
	case turns <- struct{}{}:
	case <-ctx.Done():
		return nil, errPageBusy
	case <-wait.C:
		return nil, errPageBusy
	}
	defer func() { <-turns }()
	// Drawn by another request while this one waited?
	if body := c.cached(id, tag); body != nil {
		return body, nil
	}
	body, err := draw()
	if err != nil {
		return nil, err
	}
	c.keep(id, tag, body)
	return body, nil
}

// keep puts the page of run id in the cache, in place of its older state,
// and drops the oldest pages beyond maxCachedPages.
func (c *runPageCache) keep(id, tag string, body []byte) {
	if len(body) > maxCachedPages {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.pages[id]; ok {
		c.bytes -= len(old.body)
		c.order = slices.DeleteFunc(c.order, func(o string) bool { return o == id })
	}
	for c.bytes+len(body) > maxCachedPages && len(c.order) > 0 {
		c.bytes -= len(c.pages[c.order[0]].body)
		delete(c.pages, c.order[0])
		c.order = c.order[1:]
	}
	c.pages[id] = cachedPage{tag: tag, body: body}
	c.order = append(c.order, id)
	c.bytes += len(body)
}

// runView is what the run page shows of run: its picture, with a link on
// each box whose pipeline page is known, and its table.
func (rc *Receiver) runView(run *Run) (*runView, error) {
	d := run.Diagram()
	v := &runView{ID: run.ID, Status: string(run.Status), Started: run.Created.UTC().Format("2006-01-02 15:04:05"),
		StartedBy: run.StartedBy, Projects: len(run.Steps)}
	if run.Finished != nil {
		v.Finished = run.Finished.UTC().Format("2006-01-02 15:04:05")
	}
	v.Done, v.Failed = countSteps(run)
	wave := map[string]int{}
	for i, w := range run.Waves {
		for _, p := range w {
			wave[p] = i + 1
		}
	}
	for i := range d.Nodes {
		n := &d.Nodes[i]
		row := stepRow{Project: n.ID, Wave: wave[n.ID], State: n.State, Word: string(n.State)}
		if word, ok := stateWords[n.State]; ok {
			row.Word = word
		}
		if s := run.Steps[n.ID]; s != nil {
			row.PipelineID, row.Reason = s.PipelineID, s.Reason
			row.Link = rc.pipelineLink(n.ID, s)
		}
		n.Link = row.Link
		v.Steps = append(v.Steps, row)
	}
	var svg bytes.Buffer
	if err := picture.WriteSVG(&svg, d, picture.Options{Inline: true}); err != nil {
		return nil, err
	}
	// The picture package escapes everything it draws and links only to
	// http(s) URLs: its SVG goes into the page as it is.
	v.SVG = template.HTML(svg.String())
	return v, nil
}

// pipelineLink is the page of a step's pipeline: the one GitLab named, or
// else the path GitLab gives pipeline pages under the GitLab URL. A link
// leads only to the GitLab the receiver talks to (Receiver.GitLabURL), over
// https, or http when that URL is http; without a GitLab URL there are no
// links.
func (rc *Receiver) pipelineLink(project string, s *Step) string {
	base, err := url.Parse(rc.GitLabURL)
	if rc.GitLabURL == "" || err != nil || base.Host == "" || s.PipelineID <= 0 {
		return ""
	}
	candidates := []string{PipelinePageURL(s.PipelineURL)}
	if ValidateProjectPath(project) == nil {
		candidates = append(candidates, PipelinePageURL(strings.TrimSuffix(base.String(), "/")+"/"+project+"/-/pipelines/"+strconv.FormatInt(s.PipelineID, 10)))
	}
	for _, link := range candidates {
		u, err := url.Parse(link)
		// https, or http only when the GitLab URL itself is http: a
		// recorded http page of an https GitLab would be read in clear.
		secure := u.Scheme == "https" || (u.Scheme == "http" && base.Scheme == "http")
		if link != "" && err == nil && secure && strings.EqualFold(u.Host, base.Host) {
			return link
		}
	}
	return ""
}
