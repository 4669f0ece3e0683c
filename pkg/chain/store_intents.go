package chain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// intent is a pipeline the engine decided to create. It is written in the
// same transaction as the decision, and removed in the same transaction
// that records the created pipeline, so a crash at any point leaves either
// the intent (do it, or find that it was done) or the record.
type intent struct {
	RunID   string    `json:"run_id"`
	Project string    `json:"project"`
	Target  Target    `json:"target"`
	Created time.Time `json:"created"`
	// Attempted is set, and committed, before each API call: after a crash
	// or an error, a pipeline may exist that was never recorded, so the
	// next try looks for it before creating one.
	Attempted bool      `json:"attempted,omitempty"`
	Attempts  int       `json:"attempts,omitempty"`
	NextTry   time.Time `json:"next_try,omitempty"`
	LastError string    `json:"last_error,omitempty"`
}

func intentKey(runID, project string) []byte {
	return []byte(runID + "\x00" + project)
}

// saveIntent stores in under its run and project.
func saveIntent(tx *bolt.Tx, in intent) error {
	return putJSON(tx.Bucket(bucketIntents), intentKey(in.RunID, in.Project), in)
}

// loadIntent is the intent of project in run runID, if there is one.
func loadIntent(tx *bolt.Tx, runID, project string) (in intent, found bool, err error) {
	found, err = getJSON(tx.Bucket(bucketIntents), intentKey(runID, project), &in)
	return in, found, err
}

// deleteIntent removes the intent of project in run runID.
func deleteIntent(tx *bolt.Tx, runID, project string) error {
	return tx.Bucket(bucketIntents).Delete(intentKey(runID, project))
}

// loadIntents is every intent, in the order of their keys.
func loadIntents(tx *bolt.Tx) ([]intent, error) {
	var intents []intent
	err := tx.Bucket(bucketIntents).ForEach(func(k, v []byte) error {
		var in intent
		if err := json.Unmarshal(v, &in); err != nil {
			return fmt.Errorf("state: intent %q: %w", k, err)
		}
		intents = append(intents, in)
		return nil
	})
	return intents, err
}

// countIntents is the number of pipelines still to create.
func countIntents(tx *bolt.Tx) int { return tx.Bucket(bucketIntents).Stats().KeyN }

// runHasIntents reports whether a pipeline of run runID is still to be
// created.
func runHasIntents(tx *bolt.Tx, runID string) bool {
	prefix := []byte(runID + "\x00")
	k, _ := tx.Bucket(bucketIntents).Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix)
}
