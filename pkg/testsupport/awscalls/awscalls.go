// Package awscalls records the AWS calls that wxtoken's function code makes
// under the test suite, so that infra/local/iam can evaluate each one against
// the IAM role of the function that made it.
//
// Attribution is by credentials, as in AWS, where a call is authorized for
// the role whose credentials signed it: the tests give the code of each
// function an access key ID naming that function (Identity), and the test
// bed's recording proxy (infra/local/testbed) reads the key ID from each
// request's SigV4 Authorization header. Calls signed with any other key (the
// tests' own set-up and assertions) are not recorded.
package awscalls

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Identity is the access key ID that stands for a function's role in tests.
// DynamoDB Local accepts only letters and digits in key IDs.
type Identity string

// The identities. Scheduled and API are the template's function logical
// IDs; Core is the refresh core (pkg/refresh) driven by its own tests and not
// through a function's entry point: both functions run it, so each of its
// calls must be allowed to both roles.
const (
	Scheduled Identity = "ScheduledRefreshFunction"
	API       Identity = "RefreshApiFunction"
	Core      Identity = "RefreshCore"
)

// Function is what the IAM check reads for an identity: a function's
// logical ID, or "*" (every function).
func (id Identity) Function() (string, bool) {
	switch id {
	case Scheduled, API:
		return string(id), true
	case Core:
		return "*", true
	}
	return "", false
}

// Resource kinds of a recorded call.
const (
	// ResourceTable is the state table (tests use a table of their own;
	// the check maps it onto the stack's).
	ResourceTable = "table"
	// ResourceParameter is a parameter {prefix}/{app}/{leaf}[:selector]
	// (tests use a prefix of their own; the check maps it onto the stack's).
	ResourceParameter = "parameter"
	// ResourceRaw is a name that fits neither shape, kept as it was.
	ResourceRaw = "raw"
	// ResourceNone is a call that names no resource.
	ResourceNone = "none"
)

// Call is one kind of call, as the IAM check reads it.
type Call struct {
	Function string `json:"function"`
	Action   string `json:"action"`
	Resource string `json:"resource"`
	Leaf     string `json:"leaf,omitempty"`
	Selector bool   `json:"selector,omitempty"`
	// KeyPrefix is the kind of item a DynamoDB item operation names: its
	// partition key up to and including "#" ("state#", "app#"), which the
	// IAM check passes as dynamodb:LeadingKeys.
	KeyPrefix string `json:"key_prefix,omitempty"`
	Name      string `json:"name,omitempty"`
	Count     int    `json:"count"`
}

func (c Call) key() string {
	return strings.Join([]string{c.Function, c.Action, c.Resource, c.Leaf, fmt.Sprint(c.Selector), c.KeyPrefix, c.Name}, "|")
}

// credentialRE takes the access key ID and the service out of a SigV4
// Authorization header.
var credentialRE = regexp.MustCompile(`Credential=([^/,\s]+)/[^/]+/[^/]+/([^/]+)/aws4_request`)

// parameterRE splits a parameter name into prefix, app, leaf and selector.
var parameterRE = regexp.MustCompile(`^(/[^/:]+)+/([^/:]+)/([^/:]+)(:[^/:]+)?$`)

// Parse returns the calls one request makes: one per resource it names
// (one with ResourceNone if it names none), attributed to the identity that
// signed it. ok is false for requests not signed by an Identity.
func Parse(authorization, target string, body []byte) (calls []Call, ok bool) {
	m := credentialRE.FindStringSubmatch(authorization)
	if m == nil {
		return nil, false
	}
	fn, ok := Identity(m[1]).Function()
	if !ok {
		return nil, false
	}
	service := m[2]
	op := target
	if i := strings.LastIndexByte(target, '.'); i >= 0 {
		op = target[i+1:]
	}
	if op == "" {
		op = "unknown"
	}
	action := service + ":" + op
	var doc any
	_ = json.Unmarshal(body, &doc) // a body that is not JSON names no resource
	var tables, params []string
	collect(doc, &tables, &params)
	switch service { // DynamoDB items may hold a "Name"; SSM has no tables
	case "dynamodb":
		params = nil
	case "ssm":
		tables = nil
	}
	if len(tables) > 0 { // every table a function names is the stack's one table
		calls = append(calls, Call{Function: fn, Action: action, Resource: ResourceTable, KeyPrefix: keyPrefix(doc)})
	}
	for _, name := range dedupe(params) {
		calls = append(calls, parameterCall(fn, action, name))
	}
	if len(calls) == 0 {
		calls = append(calls, Call{Function: fn, Action: action, Resource: ResourceNone})
	}
	return calls, true
}

// keyPrefix returns the kind of the item a DynamoDB item operation names,
// from its Key.pk: "state#" for "state#shop"; empty when the request names
// no single item (Scan, Query) or the key has no "#".
func keyPrefix(doc any) string {
	m, _ := doc.(map[string]any)
	key, _ := m["Key"].(map[string]any)
	pk, _ := key["pk"].(map[string]any)
	s, _ := pk["S"].(string)
	if i := strings.IndexByte(s, '#'); i >= 0 {
		return s[:i+1]
	}
	return ""
}

func parameterCall(fn, action, name string) Call {
	m := parameterRE.FindStringSubmatch(name)
	if m == nil {
		return Call{Function: fn, Action: action, Resource: ResourceRaw, Name: name}
	}
	return Call{Function: fn, Action: action, Resource: ResourceParameter, Leaf: m[3], Selector: m[4] != ""}
}

// collect gathers the table names (TableName) and parameter names (Name,
// Names, Path) anywhere in a request body.
func collect(v any, tables, params *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, item := range x {
			switch s := item.(type) {
			case string:
				switch k {
				case "TableName":
					*tables = append(*tables, s)
				case "Name", "Path":
					*params = append(*params, s)
				}
			case []any:
				if k == "Names" {
					for _, n := range s {
						if str, ok := n.(string); ok {
							*params = append(*params, str)
						}
					}
				}
			}
			collect(item, tables, params)
		}
	case []any:
		for _, item := range x {
			collect(item, tables, params)
		}
	}
}

func dedupe(in []string) []string {
	sort.Strings(in)
	out := in[:0]
	for i, s := range in {
		if i == 0 || s != in[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// Recorder counts calls by kind. It is safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	calls map[string]*Call
}

// Add records the calls of one request (see Parse); it does nothing for a
// request no Identity signed.
func (r *Recorder) Add(authorization, target string, body []byte) {
	calls, ok := Parse(authorization, target, body)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[string]*Call{}
	}
	for _, c := range calls {
		k := c.key()
		if have, ok := r.calls[k]; ok {
			have.Count++
			continue
		}
		c.Count = 1
		r.calls[k] = &c
	}
}

// Calls returns what was recorded, sorted.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Call, 0, len(r.calls))
	for _, c := range r.calls {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key() < out[j].key() })
	return out
}

// WriteJSON writes the recorded calls as the JSON array infra/local/iam reads.
func (r *Recorder) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r.Calls()); err != nil {
		return fmt.Errorf("awscalls: write calls: %w", err)
	}
	return nil
}
