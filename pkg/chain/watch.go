package chain

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// DigestSource tells the current manifest digest of an image's tag.
type DigestSource interface {
	Digest(ctx context.Context, image ImageRef) (string, error)
}

// ImageChange is an external image whose tag now names another manifest.
type ImageChange struct {
	Image     string   `json:"image"`
	Old       string   `json:"old"`
	New       string   `json:"new"`
	Triggered []string `json:"triggered"`
	// Run is the chain run the change started ("" for a Watcher.DryRun).
	Run string `json:"run,omitempty"`
}

// WatchResult is what one check of the external images found.
type WatchResult struct {
	Checked int           `json:"checked"`
	Changed []ImageChange `json:"changed"`
	Errors  []string      `json:"errors"`
}

// Watcher checks the external base images of a graph (`chain watch`):
// every image referenced by tag (never one pinned by digest) is asked for
// its digest; a digest that differs from the recorded one starts one chain
// run rooted at the projects whose FROM uses the image. The first sighting
// of an image only records its digest.
type Watcher struct {
	Engine  *Engine
	Digests DigestSource
	// Concurrency bounds the registry requests under way (default 4).
	Concurrency int
	// DryRun reports what would be triggered, and records nothing.
	DryRun bool
}

// watchedImages maps each external image referenced by tag to the projects
// whose FROM uses it.
func watchedImages(g *Graph) map[string][]string {
	users := map[string][]string{}
	for _, p := range g.Projects {
		for _, ext := range p.External {
			ref, err := ParseImageRef(ext)
			if err != nil || ref.Digest != "" || ref.Tag == "" {
				continue // pinned by digest: never sent to a registry
			}
			users[ref.String()] = append(users[ref.String()], p.Path)
		}
	}
	for _, ps := range users {
		sort.Strings(ps)
	}
	return users
}

// Check asks the registries once and acts on what changed. The digest of
// an image and the run it starts are committed in one transaction: a
// crash leaves both or neither, and the run's pipelines are created by the
// engine's intents (Work, or Engine.FireDue for a one-shot check).
func (w *Watcher) Check(ctx context.Context, g *Graph) (*WatchResult, error) {
	users := watchedImages(g)
	images := make([]string, 0, len(users))
	for img := range users {
		images = append(images, img)
	}
	sort.Strings(images)
	res := &WatchResult{Checked: len(images), Changed: []ImageChange{}, Errors: []string{}}

	digests := make([]string, len(images))
	errs := make([]error, len(images))
	limit := w.Concurrency
	if limit <= 0 {
		limit = 4
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i, img := range images {
		ref, _ := ParseImageRef(img)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			digests[i], errs[i] = w.Digests.Digest(ctx, ref)
		}()
	}
	wg.Wait()

	for i, img := range images {
		if errs[i] != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", img, errs[i]))
			continue
		}
		change, err := w.Engine.recordDigest(img, digests[i], users[img], w.DryRun)
		if err != nil {
			return res, err
		}
		if change != nil {
			res.Changed = append(res.Changed, *change)
		}
	}
	return res, ctx.Err()
}

// recordDigest compares an image's digest with the recorded one; on a
// change it records the new digest and starts the run in the same
// transaction.
func (e *Engine) recordDigest(image, digest string, roots []string, dryRun bool) (*ImageChange, error) {
	var change *ImageChange
	update := e.db.Update
	if dryRun {
		update = e.db.View
	}
	err := update(func(tx *bolt.Tx) error {
		old := loadDigest(tx, image)
		if old == digest {
			return nil
		}
		if old != "" {
			change = &ImageChange{Image: image, Old: old, New: digest, Triggered: roots}
		}
		if dryRun {
			return nil
		}
		if err := saveDigest(tx, image, digest); err != nil {
			return err
		}
		if change == nil {
			e.log.Info("external image first seen", "image", image, "digest", digest)
			return nil
		}
		run, err := e.startRunTx(tx, roots, "", fmt.Sprintf("external image %s changed to %s", image, shortDigest(digest)), "")
		if err != nil {
			// The graph cannot plan it (a cycle): record the digest, say
			// why nothing was triggered.
			e.log.Error("external image changed, no run started", "image", image, "err", err)
			change.Triggered = []string{}
			return nil
		}
		change.Run = run.ID
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", image, err)
	}
	if change != nil && change.Run != "" {
		e.log.Info("external image changed, chain run started", "image", image, "run", change.Run, "roots", strings.Join(roots, " "))
		e.crash("queued")
		e.notify()
	}
	return change, nil
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

// FireDue creates the pipelines that are due now and returns how many the
// engine still has to create (their API calls failed and will be tried
// again, by the next FireDue or Work); for one-shot commands that do not
// run Work.
func (e *Engine) FireDue(ctx context.Context) (pending int, err error) {
	calls, release := callContext(ctx)
	defer release()
	if _, err := e.fireDue(ctx, calls); err != nil {
		return 0, err
	}
	err = e.db.View(func(tx *bolt.Tx) error {
		pending = countIntents(tx)
		return nil
	})
	return pending, err
}
