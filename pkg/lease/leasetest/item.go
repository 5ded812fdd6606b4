package leasetest

import (
	"errors"
	"fmt"

	"github.com/wxtoken/wxtoken/pkg/lease"
)

// item is a state item as DynamoDB stores it: attribute name to an int64
// (N) or a string (S). Items are replaced, never changed in place, so a
// decoded copy never aliases the store.
type item map[string]any

func (it item) num(k string) (int64, bool) {
	v, ok := it[k].(int64)
	return v, ok
}

func (it item) str(k string) (string, bool) {
	v, ok := it[k].(string)
	return v, ok
}

// decode reads the item through lease's own attribute mapping.
func (it item) decode(app string) lease.State {
	st := lease.DecodeAttributes(func(k string) string { v, _ := it.str(k); return v },
		func(k string) int64 { v, _ := it.num(k); return v })
	st.App = app
	return st
}

// update is an UpdateExpression: SET then REMOVE.
type update struct {
	sets    []string
	values  []any
	removes []string
}

func (u *update) set(attr string, v any) {
	u.sets = append(u.sets, attr)
	u.values = append(u.values, v)
}

func (u *update) remove(attrs ...string) { u.removes = append(u.removes, attrs...) }

// errOverlap is DynamoDB's answer to an expression naming an attribute twice.
var errOverlap = errors.New("ValidationException: Invalid UpdateExpression: Two document paths overlap with each other")

// validate refuses what DynamoDB refuses before it evaluates the condition:
// an attribute set or removed twice in one expression.
func (u *update) validate() error {
	seen := map[string]bool{}
	for _, a := range append(append([]string(nil), u.sets...), u.removes...) {
		if seen[a] {
			return fmt.Errorf("%w; path: [%s]", errOverlap, a)
		}
		seen[a] = true
	}
	return nil
}

// apply returns a new item: it with the update applied.
func (u *update) apply(it item) item {
	out := make(item, len(it)+len(u.sets))
	for k, v := range it {
		out[k] = v
	}
	for i, a := range u.sets {
		out[a] = u.values[i]
	}
	for _, a := range u.removes {
		delete(out, a)
	}
	return out
}
