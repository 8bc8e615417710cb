package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
)

// Kind is the store method an operation called.
type Kind uint8

// The operation kinds, one per store method under test.
const (
	Insert Kind = iota
	Get
	Update
	Set
	Touch
	Destroy
	Rename
	List
	Revoke
)

var kindNames = [...]string{"insert", "get", "update", "set", "touch", "destroy", "rename", "list", "revoke"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// isRead tells the kinds that never change the state.
func (k Kind) isRead() bool {
	return k == Get || k == Touch || k == List
}

// RenameResult is what a rename reported.
type RenameResult uint8

// The three outcomes of a rename.
const (
	Moved RenameResult = iota
	SourceMissing
	TargetTaken
)

var renameNames = [...]string{"moved", "source_missing", "target_taken"}

func (r RenameResult) String() string {
	if int(r) < len(renameNames) {
		return renameNames[r]
	}
	return fmt.Sprintf("result(%d)", r)
}

// Input is an operation's call: the kind and its arguments. Only the fields of its kind
// are meaningful (a rename's source is From, not ID).
type Input struct {
	Kind    Kind
	ID      string
	Token   string
	Version uint64
	From    string
	To      string
	Owner   string
	// Read is, for an update, the token of the value its record was read with ("" when
	// not recorded): a store may refuse an update over another value at the same version.
	Read string
}

// Output is an operation's reply. Only the fields of the call's kind are meaningful:
// OK for insert and update, Found/Version/Token for get, Version for set, Live for touch,
// Result for rename, IDs (sorted) for list, Count for revoke; destroy has none.
type Output struct {
	OK      bool
	Found   bool
	Live    bool
	Version uint64
	Token   string
	Result  RenameResult
	IDs     []string
	Count   uint64
}

// Op is one recorded operation. Out is nil when the outcome is unknown (the call timed
// out or lost its connection); Ret is then meaningless.
type Op struct {
	Client int64
	Call   int64
	Ret    int64
	In     Input
	Out    *Output
	// Index is the operation's position in its partition's "ops" array, for messages.
	Index int
}

// Unknown tells whether the operation's outcome is unknown.
func (o *Op) Unknown() bool { return o.Out == nil }

// Partition is the history of one owner's sessions.
type Partition struct {
	Key string
	Ops []Op
}

// History is one recorded file.
type History struct {
	Backend    string
	Scenario   string
	Partitions []Partition
}

// The file's JSON shape. Pointers and raw messages tell a missing field from a zero one.
type historyJSON struct {
	Backend    *string          `json:"backend"`
	Scenario   *string          `json:"scenario"`
	Partitions *[]partitionJSON `json:"partitions"`
}

type partitionJSON struct {
	Key *string            `json:"key"`
	Ops *[]json.RawMessage `json:"ops"`
}

type opJSON struct {
	Client *int64                     `json:"client"`
	Call   *int64                     `json:"call"`
	Ret    json.RawMessage            `json:"ret"`
	Op     map[string]json.RawMessage `json:"op"`
	Out    json.RawMessage            `json:"out"`
}

// The fields an op and an out object may carry, and those each kind requires.
var (
	opFields  = []string{"kind", "id", "token", "version", "from", "to", "owner", "read"}
	outFields = []string{"ok", "found", "version", "token", "live", "result", "ids", "count"}

	opFieldsOf = map[Kind][]string{
		Insert:  {"id", "token"},
		Get:     {"id"},
		Update:  {"id", "version", "token"},
		Set:     {"id", "version", "token"},
		Touch:   {"id"},
		Destroy: {"id"},
		Rename:  {"from", "to"},
		List:    {"owner"},
		Revoke:  {"owner"},
	}
	// Fields a kind may carry but need not.
	optionalOpFieldsOf = map[Kind][]string{Update: {"read"}}
	outFieldsOf        = map[Kind][]string{
		Insert:  {"ok"},
		Get:     {"found"}, // plus version and token when found
		Update:  {"ok"},
		Set:     {"version"},
		Touch:   {"live"},
		Destroy: {},
		Rename:  {"result"},
		List:    {"ids"},
		Revoke:  {"count"},
	}
)

// ParseHistory reads one history file strictly: unknown fields, missing or null required
// fields, fields of another kind carrying a value, and ill-typed values are errors.
func ParseHistory(r io.Reader) (*History, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var raw historyJSON
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("invalid history JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid history JSON: data after the top-level object")
	}
	switch {
	case raw.Backend == nil:
		return nil, errors.New(`missing field "backend"`)
	case raw.Scenario == nil:
		return nil, errors.New(`missing field "scenario"`)
	case raw.Partitions == nil:
		return nil, errors.New(`missing field "partitions"`)
	}
	h := &History{Backend: *raw.Backend, Scenario: *raw.Scenario}
	seen := map[string]bool{}
	for pi, rp := range *raw.Partitions {
		if rp.Key == nil {
			return nil, fmt.Errorf(`partition #%d: missing field "key"`, pi)
		}
		key := *rp.Key
		if seen[key] {
			return nil, fmt.Errorf("partition #%d: duplicate key %q", pi, key)
		}
		seen[key] = true
		if rp.Ops == nil {
			return nil, fmt.Errorf(`partition %q: missing field "ops"`, key)
		}
		p := Partition{Key: key, Ops: make([]Op, 0, len(*rp.Ops))}
		owner := ""
		for i, msg := range *rp.Ops {
			op, err := parseOp(i, msg)
			if err != nil {
				return nil, fmt.Errorf("partition %q: %w", key, err)
			}
			if op.In.Kind == List || op.In.Kind == Revoke {
				// A partition is one owner: every list and revoke in it must name the
				// same one, or the recording mixed partitions up.
				if owner == "" {
					owner = op.In.Owner
				} else if op.In.Owner != owner {
					return nil, fmt.Errorf("partition %q: %s: owner %q, but earlier list/revoke ops name %q",
						key, describeOpPos(op), op.In.Owner, owner)
				}
			}
			p.Ops = append(p.Ops, op)
		}
		h.Partitions = append(h.Partitions, p)
	}
	return h, nil
}

func describeOpPos(op Op) string {
	return fmt.Sprintf("op #%d (%s, client %d, call %d)", op.Index, op.In.Kind, op.Client, op.Call)
}

func isNull(m json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(m), []byte("null"))
}

func parseOp(i int, msg json.RawMessage) (Op, error) {
	op := Op{Index: i}
	var ro opJSON
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ro); err != nil {
		// Name the op as well as the partial decode allows.
		var loose struct {
			Op struct {
				Kind any `json:"kind"`
			} `json:"op"`
		}
		_ = json.Unmarshal(msg, &loose)
		kind := any("?")
		if loose.Op.Kind != nil {
			kind = loose.Op.Kind
		}
		return Op{}, fmt.Errorf("op #%d (kind %v): %v", i, kind, err)
	}
	where := func() string {
		kind := "?"
		if k, ok := ro.Op["kind"]; ok {
			kind = string(bytes.TrimSpace(k))
		}
		client, call := "?", "?"
		if ro.Client != nil {
			client = fmt.Sprint(*ro.Client)
		}
		if ro.Call != nil {
			call = fmt.Sprint(*ro.Call)
		}
		return fmt.Sprintf("op #%d (kind %s, client %s, call %s)", i, kind, client, call)
	}
	fail := func(format string, args ...any) (Op, error) {
		return Op{}, fmt.Errorf("%s: %s", where(), fmt.Sprintf(format, args...))
	}

	switch {
	case ro.Client == nil:
		return fail(`missing field "client"`)
	case *ro.Client < 0:
		return fail("negative client")
	case ro.Call == nil:
		return fail(`missing field "call"`)
	case *ro.Call < 0:
		return fail("negative call time")
	case ro.Ret == nil:
		return fail(`missing field "ret" (null when the outcome is unknown)`)
	case ro.Out == nil:
		return fail(`missing field "out" (null when the outcome is unknown)`)
	case ro.Op == nil:
		return fail(`missing or null field "op"`)
	}
	op.Client, op.Call = *ro.Client, *ro.Call

	in, err := parseInput(ro.Op)
	if err != nil {
		return fail("op: %v", err)
	}
	op.In = in

	retNull, outNull := isNull(ro.Ret), isNull(ro.Out)
	switch {
	case retNull && outNull:
		return op, nil // unknown outcome
	case retNull:
		return fail(`"ret" is null but "out" is not (both are null when the outcome is unknown)`)
	case outNull:
		return fail(`"out" is null but "ret" is not (both are null when the outcome is unknown)`)
	}
	if err := json.Unmarshal(ro.Ret, &op.Ret); err != nil {
		return fail(`"ret": %v`, err)
	}
	if op.Ret < op.Call {
		return fail("ret %d before call %d", op.Ret, op.Call)
	}
	var outMap map[string]json.RawMessage
	if err := json.Unmarshal(ro.Out, &outMap); err != nil {
		return fail(`"out": %v`, err)
	}
	out, err := parseOutput(in.Kind, outMap)
	if err != nil {
		return fail("out: %v", err)
	}
	op.Out = out
	return op, nil
}

// fieldReader checks an object's fields against the allowed ones and decodes them.
type fieldReader struct {
	m      map[string]json.RawMessage
	wanted map[string]bool
}

func newFieldReader(m map[string]json.RawMessage, all []string, wanted ...[]string) (*fieldReader, error) {
	allowed := map[string]bool{}
	for _, f := range all {
		allowed[f] = true
	}
	w := map[string]bool{}
	for _, list := range wanted {
		for _, f := range list {
			w[f] = true
		}
	}
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !allowed[name] {
			return nil, fmt.Errorf("unknown field %q", name)
		}
		if !w[name] && !isNull(m[name]) {
			return nil, fmt.Errorf("field %q does not belong to this kind (leave it out or null)", name)
		}
	}
	return &fieldReader{m: m, wanted: w}, nil
}

func (r *fieldReader) read(name string, dst any) error {
	v, ok := r.m[name]
	if !ok || isNull(v) {
		return fmt.Errorf("missing field %q", name)
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return fmt.Errorf("field %q: %v", name, err)
	}
	return nil
}

func parseKind(m map[string]json.RawMessage) (Kind, error) {
	var name string
	v, ok := m["kind"]
	if !ok || isNull(v) {
		return 0, errors.New(`missing field "kind"`)
	}
	if err := json.Unmarshal(v, &name); err != nil {
		return 0, fmt.Errorf(`field "kind": %v`, err)
	}
	for k, n := range kindNames {
		if n == name {
			return Kind(k), nil
		}
	}
	return 0, fmt.Errorf("unknown kind %q", name)
}

func parseInput(m map[string]json.RawMessage) (Input, error) {
	kind, err := parseKind(m)
	if err != nil {
		return Input{}, err
	}
	in := Input{Kind: kind}
	r, err := newFieldReader(m, opFields, []string{"kind"}, opFieldsOf[kind], optionalOpFieldsOf[kind])
	if err != nil {
		return in, err
	}
	for _, f := range opFieldsOf[kind] {
		var dst any
		switch f {
		case "id":
			dst = &in.ID
		case "token":
			dst = &in.Token
		case "version":
			dst = &in.Version
		case "from":
			dst = &in.From
		case "to":
			dst = &in.To
		case "owner":
			dst = &in.Owner
		}
		if err := r.read(f, dst); err != nil {
			return in, err
		}
	}
	if v, ok := m["read"]; ok && kind == Update && !isNull(v) {
		if err := r.read("read", &in.Read); err != nil {
			return in, err
		}
	}
	return in, nil
}

func parseOutput(kind Kind, m map[string]json.RawMessage) (*Output, error) {
	out := &Output{}
	wanted := outFieldsOf[kind]
	if kind == Get {
		// version and token belong to a get that found the session; checked below.
		wanted = []string{"found", "version", "token"}
	}
	r, err := newFieldReader(m, outFields, wanted)
	if err != nil {
		return nil, err
	}
	read := func(name string, dst any) {
		if err == nil {
			err = r.read(name, dst)
		}
	}
	switch kind {
	case Insert, Update:
		read("ok", &out.OK)
	case Get:
		read("found", &out.Found)
		if err == nil && out.Found {
			read("version", &out.Version)
			read("token", &out.Token)
		} else if err == nil {
			for _, f := range []string{"version", "token"} {
				if v, ok := m[f]; ok && !isNull(v) {
					return nil, fmt.Errorf("field %q given although found is false", f)
				}
			}
		}
	case Set:
		read("version", &out.Version)
	case Touch:
		read("live", &out.Live)
	case Destroy:
	case Rename:
		var name string
		read("result", &name)
		if err == nil {
			found := false
			for res, n := range renameNames {
				if n == name {
					out.Result, found = RenameResult(res), true
				}
			}
			if !found {
				return nil, fmt.Errorf(`field "result": unknown rename result %q`, name)
			}
		}
	case List:
		read("ids", &out.IDs)
		// The model compares lists as sorted sequences: order is irrelevant, a duplicate
		// id is not (it makes the list differ from the set of live sessions).
		sort.Strings(out.IDs)
	case Revoke:
		read("count", &out.Count)
	}
	if err != nil {
		return nil, err
	}
	if out.IDs == nil && kind == List {
		out.IDs = []string{}
	}
	return out, nil
}
