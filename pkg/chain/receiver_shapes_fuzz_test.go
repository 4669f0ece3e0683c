package chain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// shape is the test's own description of what the receiver reads of a body:
// an oracle written apart from the parser. A body that conforms must never
// get 400; one that does not must get 400.
type shape struct {
	kind     string // object, array, string, bool, int, id, any
	required bool   // missing or null is wrong (else: absent)
	fields   map[string]*shape
	closed   bool   // an object with no other fields allowed
	elem     *shape // of an array
	valid    func(any) bool
}

var (
	shapeProject = &shape{kind: "object", required: true, fields: map[string]*shape{
		"id":                  {kind: "id", required: true},
		"path_with_namespace": {kind: "string", required: true, valid: func(v any) bool { return ValidateProjectPath(v.(string)) == nil }},
		"default_branch":      {kind: "string"},
	}}
	shapePipelineHook = &shape{kind: "object", required: true, fields: map[string]*shape{
		"object_kind": {kind: "string", required: true, valid: func(v any) bool { return v == "pipeline" }},
		"object_attributes": {kind: "object", required: true, fields: map[string]*shape{
			"id":     {kind: "id", required: true},
			"status": {kind: "string", required: true, valid: func(v any) bool { return v != "" }},
			"ref":    {kind: "string"},
			"tag":    {kind: "bool"},
			"source": {kind: "string"},
			"url":    {kind: "string"},
			"variables": {kind: "array", elem: &shape{kind: "object", required: true, fields: map[string]*shape{
				"key": {kind: "string"}, "value": {kind: "string"},
			}}},
		}},
		"project": shapeProject,
	}}
	shapePushHook = &shape{kind: "object", required: true, fields: map[string]*shape{
		"ref": {kind: "string"},
		"commits": {kind: "array", elem: &shape{kind: "object", required: true, fields: map[string]*shape{
			"added":    {kind: "array", elem: &shape{kind: "string", required: true}},
			"modified": {kind: "array", elem: &shape{kind: "string", required: true}},
			"removed":  {kind: "array", elem: &shape{kind: "string", required: true}},
		}}},
		"total_commits_count": {kind: "int", valid: func(v any) bool { n, _ := v.(json.Number).Int64(); return n >= 0 }},
		"project":             shapeProject,
	}}
	shapeStartRun = &shape{kind: "object", required: true, closed: true, fields: map[string]*shape{
		"project": {kind: "string", required: true, valid: func(v any) bool { return ValidateProjectPath(v.(string)) == nil }},
		"ref":     {kind: "string"},
		"run_id":  {kind: "string", valid: func(v any) bool { return v == "" || ValidRunID(v.(string)) }},
	}}
)

// conforms reports whether v (decoded with UseNumber; present says whether
// the field was there at all) has the shape s.
func (s *shape) conforms(v any, present bool) bool {
	if !present || v == nil {
		return !s.required
	}
	ok := false
	switch s.kind {
	case "object":
		m, isObject := v.(map[string]any)
		if !isObject {
			return false
		}
		for key, field := range s.fields {
			fv, there := m[key]
			if !field.conforms(fv, there) {
				return false
			}
		}
		if s.closed {
			for key := range m {
				if s.fields[key] == nil {
					return false
				}
			}
		}
		ok = true
	case "array":
		list, isArray := v.([]any)
		if !isArray {
			return false
		}
		for _, item := range list {
			if !s.elem.conforms(item, true) {
				return false
			}
		}
		ok = true
	case "string":
		_, ok = v.(string)
	case "bool":
		_, ok = v.(bool)
	case "int", "id":
		n, isNumber := v.(json.Number)
		if !isNumber {
			return false
		}
		i, err := strconv.ParseInt(n.String(), 10, 64)
		ok = err == nil && (s.kind == "int" || i > 0)
	}
	return ok && (s.valid == nil || s.valid(v))
}

// jsonPath is a field of a decoded body: object keys and array indices.
type jsonPath []any

// jsonPaths lists every value of v in a fixed order, v itself first.
func jsonPaths(v any, prefix jsonPath, out []jsonPath) []jsonPath {
	out = append(out, slices.Clone(prefix))
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			out = jsonPaths(x[k], append(prefix, k), out)
		}
	case []any:
		for i, item := range x {
			out = jsonPaths(item, append(prefix, i), out)
		}
	}
	return out
}

// mutate returns v with the value at p replaced (or removed, for kind 1),
// as a fuzzer-chosen wrong shape.
func mutate(v any, p jsonPath, kind uint8, text string) any {
	if len(p) == 0 {
		return replacement(v, kind, text)
	}
	switch x := v.(type) {
	case map[string]any:
		k := p[0].(string)
		if len(p) == 1 && kind%12 == 1 {
			delete(x, k)
			return x
		}
		x[k] = mutate(x[k], p[1:], kind, text)
	case []any:
		i := p[0].(int)
		if len(p) == 1 && kind%12 == 1 {
			return slices.Delete(x, i, i+1)
		}
		x[i] = mutate(x[i], p[1:], kind, text)
	}
	return v
}

func replacement(old any, kind uint8, text string) any {
	numbers := []string{"0", "-1", "1", "31", "3.5", "1e3", "9223372036854775807", "9223372036854775808", "-9223372036854775808"}
	switch kind % 12 {
	case 0, 1: // 1 on the root: null too
		return nil
	case 2:
		return text
	case 3:
		return json.Number(numbers[len(text)%len(numbers)])
	case 4:
		return len(text)%2 == 0
	case 5:
		return []any{}
	case 6:
		return []any{nil}
	case 7:
		return map[string]any{}
	case 8:
		return map[string]any{text: nil}
	case 9:
		return []any{old, nil}
	case 10:
		return []any{old}
	default:
		return []any{text, json.Number("1"), map[string]any{}}
	}
}

type shapeSeed struct {
	method, target, event string
	body                  []byte
	shape                 *shape
	// answers are the codes a conforming body may get.
	answers []int
}

func shapeSeeds(tb testing.TB) []shapeSeed {
	tb.Helper()
	pipeline, err := os.ReadFile("testdata/hooks/pipeline-success.json")
	if err != nil {
		tb.Fatal(err)
	}
	push, err := os.ReadFile("testdata/hooks/push-default-branch.json")
	if err != nil {
		tb.Fatal(err)
	}
	hook := []int{http.StatusOK, http.StatusAccepted, http.StatusNoContent}
	return []shapeSeed{
		{"POST", "/hook", "Pipeline Hook", pipeline, shapePipelineHook, hook},
		{"POST", "/hook", "Pipeline Hook", pipelineHook(tb, "ops/ruby", 5001, "failed", hookOpts{runID: "20261126-101500-a1b2c3d4", roots: "ops/base,ops/ruby"}), shapePipelineHook, hook},
		{"POST", "/hook", "Push Hook", push, shapePushHook, hook},
		{"POST", "/runs", "", []byte(`{"project":"ops/ruby","ref":"main","run_id":"20261126-101500-a1b2c3d4"}`), shapeStartRun,
			[]int{http.StatusCreated, http.StatusConflict, http.StatusUnprocessableEntity}},
	}
}

// FuzzHookShapes sends the handlers well-formed JSON of wrong shapes: a
// recorded payload (pipeline, push, POST /runs) with one value, chosen by
// the fuzzer, set to null, removed, or given another type. The handler runs
// in the fuzzer's goroutine (a panic is a failure, not a recovered
// request). A body the oracle above finds wrong gets 400 with a one-line
// body and changes nothing; a conforming one never gets 400, nor any 5xx.
func FuzzHookShapes(f *testing.F) {
	f.Add(uint8(0), uint16(0), uint8(0), "")  // the whole body null
	f.Add(uint8(0), uint16(3), uint8(0), "")  // a field null
	f.Add(uint8(0), uint16(40), uint8(6), "") // [null]
	f.Add(uint8(1), uint16(9), uint8(2), "x")
	f.Add(uint8(2), uint16(20), uint8(6), "")
	f.Add(uint8(2), uint16(5), uint8(1), "")
	f.Add(uint8(3), uint16(1), uint8(3), "ab")
	f.Add(uint8(3), uint16(2), uint8(8), "extra")
	fx := newEngineFixture(f, testGraph("ops/base:", "ops/ruby: ops/base", "ops/app: ops/ruby"))
	h := fx.recv.Handler()
	seeds := shapeSeeds(f)
	f.Fuzz(func(t *testing.T, which uint8, pick uint16, kind uint8, text string) {
		seed := seeds[int(which)%len(seeds)]
		dec := json.NewDecoder(bytes.NewReader(seed.body))
		dec.UseNumber()
		var doc any
		if err := dec.Decode(&doc); err != nil {
			t.Fatal(err)
		}
		paths := jsonPaths(doc, nil, nil)
		at := paths[int(pick)%len(paths)]
		doc = mutate(doc, at, kind, text)
		body, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		wantBad := !seed.shape.conforms(doc, true)
		runsBefore := storedRuns(t, fx.engine)

		rec := serveDirect(t, h, seed.method, seed.target, seed.event, "s3cret", string(body))
		where := fmt.Sprintf("%s %s %s, %v changed (kind %d): %s", seed.method, seed.target, seed.event, at, kind%12, body)
		switch {
		case wantBad && rec.Code != http.StatusBadRequest:
			t.Fatalf("%s\nHTTP %d %s, want 400 for this shape", where, rec.Code, rec.Body)
		case !wantBad && !slices.Contains(seed.answers, rec.Code):
			t.Fatalf("%s\nHTTP %d %s, want one of %v", where, rec.Code, rec.Body, seed.answers)
		}
		if rec.Code == http.StatusBadRequest {
			line := rec.Body.String()
			var answer struct{ Error string }
			if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") || json.Unmarshal([]byte(line), &answer) != nil || answer.Error == "" {
				t.Fatalf("%s\n400 body %q, want one line of {\"error\": ...}", where, line)
			}
			if n := storedRuns(t, fx.engine); n != runsBefore {
				t.Fatalf("%s\na 400 changed the state: %d runs before, %d after", where, runsBefore, n)
			}
		}
	})
}

// storedRuns counts the runs of the state file.
func storedRuns(t testing.TB, e *Engine) int {
	t.Helper()
	n := 0
	err := e.db.View(func(tx *bolt.Tx) error {
		n = countRuns(tx)
		return nil
	})
	if err != nil {
		t.Fatalf("state unreadable: %v", err)
	}
	return n
}
