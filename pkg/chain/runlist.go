package chain

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Pages of GET /runs. A flood of 110,000 runs made an unbounded listing
// answer 150 MB from 1.4 GB of memory per request: a page is bounded in
// runs and in bytes, and the next one is asked for with a cursor.
const (
	// DefaultRunsPage is the number of runs of a page when none is asked for.
	DefaultRunsPage = 100
	// MaxRunsPage is the most runs one page holds.
	MaxRunsPage = 1000
	// maxRunsPageBytes bounds the stored JSON of one page's runs: a run of a
	// thousand projects is some 200 KB, and a thousand of those must not be
	// read for one request. A page holds at least one run, whatever its size.
	maxRunsPageBytes = 8 << 20
)

// RunPage is one page of runs, newest first.
type RunPage struct {
	Runs []*Run
	// Next is the id to ask the following page before; "" on the last page.
	Next string
}

// RunsBefore returns the newest runs whose ids sort before before (all runs
// when before is ""), newest first: at most limit (1 to MaxRunsPage) and at
// most maxRunsPageBytes of stored JSON. Run ids sort in the order the runs
// started, so this walks the bucket backwards from the cursor and decodes
// only the runs of the page.
func (e *Engine) RunsBefore(before string, limit int) (RunPage, error) {
	if limit < 1 || limit > MaxRunsPage {
		return RunPage{}, fmt.Errorf("runs page of %d: expected 1 to %d runs", limit, MaxRunsPage)
	}
	var page RunPage
	err := e.db.View(func(tx *bolt.Tx) error {
		size, last := 0, ""
		return walkRunsBack(tx, before, func(k, v []byte) (bool, error) {
			if len(page.Runs) == limit || (len(page.Runs) > 0 && size+len(v) > maxRunsPageBytes) {
				page.Next = last
				return false, nil
			}
			var r Run
			e.runsDecoded.Add(1)
			if err := json.Unmarshal(v, &r); err != nil {
				return false, fmt.Errorf("state: run %s: %w", k, err)
			}
			size, last = size+len(v), string(k)
			page.Runs = append(page.Runs, &r)
			return true, nil
		})
	})
	if err != nil {
		return RunPage{}, err
	}
	return page, nil
}
