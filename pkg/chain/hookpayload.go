package chain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// The receiver reads GitLab's webhook payloads itself, field by field,
// instead of through the client library's event types: their UnmarshalJSON
// dereferences nil for `"object_attributes": null` or `"builds": [null]`,
// and they reject a payload whose fields the receiver never reads have a
// type the library did not expect. Here every field the receiver reads must
// have the type GitLab documents (an error names the field and the type
// expected); every other field is not looked at, so that GitLab may add or
// change those without the hooks failing.

// HookPayloadError is a webhook body of the wrong shape: the field (a path
// like object_attributes.variables[2].key) and what was expected.
type HookPayloadError struct {
	Event string // "pipeline", "push"
	Field string
	Msg   string
}

func (e *HookPayloadError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("not a GitLab %s event: %s", e.Event, e.Msg)
	}
	return fmt.Sprintf("not a GitLab %s event: %s: %s", e.Event, e.Field, e.Msg)
}

// jsonObject is a decoded JSON object with the path it was found at, for
// reading fields of an expected type.
type jsonObject struct {
	event  string
	path   string
	fields map[string]any
}

// decodeHookObject decodes body, which must be one JSON object.
func decodeHookObject(event string, body []byte) (jsonObject, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return jsonObject{}, &HookPayloadError{Event: event, Msg: "body is not JSON"}
	}
	if dec.More() {
		return jsonObject{}, &HookPayloadError{Event: event, Msg: "expected one JSON object, found more after it"}
	}
	fields, ok := v.(map[string]any)
	if !ok {
		return jsonObject{}, &HookPayloadError{Event: event, Msg: "expected a JSON object, got " + jsonKind(v)}
	}
	return jsonObject{event: event, fields: fields}, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func (o jsonObject) fieldPath(key string) string {
	if o.path == "" {
		return key
	}
	return o.path + "." + key
}

func (o jsonObject) wrong(field, msg string) error {
	return &HookPayloadError{Event: o.event, Field: field, Msg: msg}
}

// get returns the field's value; null counts as absent.
func (o jsonObject) get(key string) (any, bool) {
	v, ok := o.fields[key]
	return v, ok && v != nil
}

// object reads a field that must be an object.
func (o jsonObject) object(key string) (jsonObject, error) {
	v, ok := o.get(key)
	if !ok {
		return jsonObject{}, o.wrong(o.fieldPath(key), "missing, expected an object")
	}
	fields, isObject := v.(map[string]any)
	if !isObject {
		return jsonObject{}, o.wrong(o.fieldPath(key), "expected an object, got "+jsonKind(v))
	}
	return jsonObject{event: o.event, path: o.fieldPath(key), fields: fields}, nil
}

// objects reads an array of objects; a missing field or null is none.
func (o jsonObject) objects(key string) ([]jsonObject, error) {
	v, ok := o.get(key)
	if !ok {
		return nil, nil
	}
	list, isArray := v.([]any)
	if !isArray {
		return nil, o.wrong(o.fieldPath(key), "expected an array of objects, got "+jsonKind(v))
	}
	out := make([]jsonObject, 0, len(list))
	for i, item := range list {
		path := fmt.Sprintf("%s[%d]", o.fieldPath(key), i)
		fields, isObject := item.(map[string]any)
		if !isObject {
			return nil, o.wrong(path, "expected an object, got "+jsonKind(item))
		}
		out = append(out, jsonObject{event: o.event, path: path, fields: fields})
	}
	return out, nil
}

// str reads an optional string field; missing or null is "".
func (o jsonObject) str(key string) (string, error) {
	v, ok := o.get(key)
	if !ok {
		return "", nil
	}
	s, isString := v.(string)
	if !isString {
		return "", o.wrong(o.fieldPath(key), "expected a string, got "+jsonKind(v))
	}
	return s, nil
}

// requiredStr reads a string field that must be there and not empty.
func (o jsonObject) requiredStr(key string) (string, error) {
	s, err := o.str(key)
	if err == nil && s == "" {
		err = o.wrong(o.fieldPath(key), "missing, expected a non-empty string")
	}
	return s, err
}

// strs reads an optional array of strings.
func (o jsonObject) strs(key string) ([]string, error) {
	v, ok := o.get(key)
	if !ok {
		return nil, nil
	}
	list, isArray := v.([]any)
	if !isArray {
		return nil, o.wrong(o.fieldPath(key), "expected an array of strings, got "+jsonKind(v))
	}
	out := make([]string, 0, len(list))
	for i, item := range list {
		s, isString := item.(string)
		if !isString {
			return nil, o.wrong(fmt.Sprintf("%s[%d]", o.fieldPath(key), i), "expected a string, got "+jsonKind(item))
		}
		out = append(out, s)
	}
	return out, nil
}

// boolean reads an optional boolean; missing or null is false.
func (o jsonObject) boolean(key string) (bool, error) {
	v, ok := o.get(key)
	if !ok {
		return false, nil
	}
	b, isBool := v.(bool)
	if !isBool {
		return false, o.wrong(o.fieldPath(key), "expected true or false, got "+jsonKind(v))
	}
	return b, nil
}

// integer reads an optional whole number; missing or null is 0.
func (o jsonObject) integer(key string) (int64, error) {
	v, ok := o.get(key)
	if !ok {
		return 0, nil
	}
	n, isNumber := v.(json.Number)
	if !isNumber {
		return 0, o.wrong(o.fieldPath(key), "expected a whole number, got "+jsonKind(v))
	}
	i, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		return 0, o.wrong(o.fieldPath(key), fmt.Sprintf("expected a whole number, got %.40s", n))
	}
	return i, nil
}

// id reads a GitLab id: a whole number above 0. GitLab's ids start at 1; a
// pipeline id of 0 or less is no pipeline (and would be a key of the state
// file's pipeline index that no real pipeline has).
func (o jsonObject) id(key string) (int64, error) {
	if _, ok := o.get(key); !ok {
		return 0, o.wrong(o.fieldPath(key), "missing, expected a GitLab id (a whole number above 0)")
	}
	n, err := o.integer(key)
	if err == nil && n <= 0 {
		err = o.wrong(o.fieldPath(key), fmt.Sprintf("%d: expected a GitLab id (a whole number above 0)", n))
	}
	return n, err
}

// hookProject is the project object of a pipeline or push event.
func hookProject(o jsonObject) (path string, id int64, defaultBranch string, err error) {
	project, err := o.object("project")
	if err != nil {
		return "", 0, "", err
	}
	if id, err = project.id("id"); err != nil {
		return "", 0, "", err
	}
	if path, err = project.requiredStr("path_with_namespace"); err != nil {
		return "", 0, "", err
	}
	if verr := ValidateProjectPath(path); verr != nil {
		return "", 0, "", project.wrong(project.fieldPath("path_with_namespace"), verr.Error())
	}
	if defaultBranch, err = project.str("default_branch"); err != nil {
		return "", 0, "", err
	}
	return path, id, defaultBranch, nil
}

// ParsePipelineHook reads a GitLab Pipeline Hook payload into the update
// the engine takes. A body of the wrong shape is a *HookPayloadError.
func ParsePipelineHook(body []byte) (PipelineUpdate, error) {
	var u PipelineUpdate
	ev, err := decodeHookObject("pipeline", body)
	if err != nil {
		return u, err
	}
	kind, err := ev.str("object_kind")
	if err != nil {
		return u, err
	}
	switch kind {
	case "pipeline":
	case "":
		return u, ev.wrong("object_kind", `missing, expected "pipeline"`)
	default:
		return u, ev.wrong("object_kind", fmt.Sprintf(`%q, expected "pipeline"`, truncate(kind, 40)))
	}
	attrs, err := ev.object("object_attributes")
	if err != nil {
		return u, err
	}
	if u.PipelineID, err = attrs.id("id"); err != nil {
		return u, err
	}
	if u.Status, err = attrs.requiredStr("status"); err != nil {
		return u, err
	}
	if u.Ref, err = attrs.str("ref"); err != nil {
		return u, err
	}
	if u.Tag, err = attrs.boolean("tag"); err != nil {
		return u, err
	}
	if u.Source, err = attrs.str("source"); err != nil {
		return u, err
	}
	// GitLab 16.1 and later name the pipeline's page; anything but an
	// http(s) URL is not kept.
	page, err := attrs.str("url")
	if err != nil {
		return u, err
	}
	u.PipelineURL = PipelinePageURL(page)
	variables, err := attrs.objects("variables")
	if err != nil {
		return u, err
	}
	for _, v := range variables {
		key, err := v.str("key")
		if err != nil {
			return u, err
		}
		value, err := v.str("value")
		if err != nil {
			return u, err
		}
		switch key {
		case RootsVariable:
			for _, r := range strings.Split(value, ",") {
				if r = strings.TrimSpace(r); r != "" && ValidateProjectPath(r) == nil {
					u.RunRoots = append(u.RunRoots, r)
				}
			}
		case RunVariable:
			u.RunID = value
		}
	}
	u.Project, u.ProjectID, u.DefaultBranch, err = hookProject(ev)
	return u, err
}

// PushUpdate is what the receiver reads of a Push Hook.
type PushUpdate struct {
	Project       string
	DefaultBranch string
	Ref           string
	// Files are the paths added, modified or removed by the listed commits.
	Files []string
	// Unlisted: GitLab lists at most 20 commits of a push, and this one had
	// more.
	Unlisted bool
}

// ParsePushHook reads a GitLab Push Hook payload. A body of the wrong shape
// is a *HookPayloadError.
func ParsePushHook(body []byte) (PushUpdate, error) {
	var u PushUpdate
	ev, err := decodeHookObject("push", body)
	if err != nil {
		return u, err
	}
	if u.Ref, err = ev.str("ref"); err != nil {
		return u, err
	}
	commits, err := ev.objects("commits")
	if err != nil {
		return u, err
	}
	for _, c := range commits {
		for _, key := range []string{"added", "modified", "removed"} {
			files, err := c.strs(key)
			if err != nil {
				return u, err
			}
			u.Files = append(u.Files, files...)
		}
	}
	total, err := ev.integer("total_commits_count")
	if err != nil {
		return u, err
	}
	if total < 0 {
		return u, ev.wrong("total_commits_count", fmt.Sprintf("%d: expected 0 or more", total))
	}
	u.Unlisted = total > int64(len(commits))
	u.Project, _, u.DefaultBranch, err = hookProject(ev)
	return u, err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
