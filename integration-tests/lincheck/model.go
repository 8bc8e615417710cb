package main

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
)

// The porcupine model of one partition, with operations of unknown outcome.
//
// An operation whose outcome is unknown may take effect at any instant after its call,
// or never. Giving it an interval that ends after everything else and letting the
// checker place it is exact, but the checker then also tries every later placement of
// every such operation: a history with a few dozen of them and an anomaly near its end
// (which makes the checker exhaust every placement) does not finish in minutes.
//
// So the model carries them instead. Its state is a set of configurations, each a store
// state plus the operations called but not (yet) applied, the "pending" ones. An unknown
// operation enters the history as an activation, an instant at its call, which adds it to
// every configuration's pending set. Before any other operation, a configuration may
// apply any of its pending operations, in any order: the ones that operation's reply
// needs, or that change what it does. That is the same set of behaviours as placing the
// operation anywhere after its call, with the choice kept in the state, where equal
// outcomes merge, instead of in the search. These rules keep the sets small without
// losing any behaviour:
//
//   - Only pending operations that touch the ids the operation touches (transitively,
//     through pending operations sharing ids), and pending revokes, are applied before
//     it: the others commute with it and can still be applied later. List and revoke
//     touch every id.
//   - A pending operation that would change nothing is not applied (keeping it pending
//     allows strictly more).
//   - Before a read, a configuration that explains the reply as it is applies nothing
//     more: every configuration reached from it by applying pending operations can
//     still be reached after the read. Only reads that need an effect apply one.
//     Likewise before a revoke: applying more ends in the same empty store.
//   - Before a list or a revoke, pending operations that change only a session's content
//     wait (see contentOnlyBefore), and the search stops when no pending operation could
//     still produce the reply (see fixable).
//   - Of two configurations with the same store, one whose pending set is a subset of
//     the other's is dropped: the other can do all it can.

// pendingOp is an operation of unknown outcome.
type pendingOp struct {
	in    Input
	ids   []string // the ids it touches; nil for a revoke, which touches every id
	index int      // its position in the partition, for display
}

// activation is the porcupine input standing for an unknown-outcome operation's call.
type activation struct {
	op int32 // index into the model's pending operations
}

// config is one possible state of the store with the operations still pending.
type config struct {
	store   *state
	pending []int32 // sorted; never mutated once built
	hash    uint64
}

func pendingHash(pending []int32) uint64 {
	var h uint64
	for _, p := range pending {
		h += mix64(uint64(p) + 0x632be59bd9b4e019)
	}
	return h
}

func newConfig(store *state, pending []int32) *config {
	return &config{store: store, pending: pending, hash: store.hash ^ mix64(pendingHash(pending)+0x2545f4914f6cdd1d)}
}

func configsEqual(a, b *config) bool {
	return a == b || a.hash == b.hash && slices.Equal(a.pending, b.pending) && statesEqual(a.store, b.store)
}

// subset tells whether sorted a is a subset of sorted b.
func subset(a, b []int32) bool {
	if len(a) > len(b) {
		return false
	}
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j == len(b) || b[j] != x {
			return false
		}
		j++
	}
	return true
}

func withPending(pending []int32, p int32) []int32 {
	i, found := slices.BinarySearch(pending, p)
	if found {
		return pending
	}
	return slices.Insert(slices.Clone(pending), i, p)
}

func withoutPending(pending []int32, p int32) []int32 {
	i, found := slices.BinarySearch(pending, p)
	if !found {
		return pending
	}
	out := make([]int32, 0, len(pending)-1)
	out = append(out, pending[:i]...)
	return append(out, pending[i+1:]...)
}

// configSet is the model's state: the configurations the history so far allows.
type configSet struct {
	configs []*config // sorted by hash; no two equal, none dominated by another
	hash    uint64
}

// makeSet canonicalizes configurations into a set: duplicates and dominated ones
// dropped, the rest sorted by hash.
func makeSet(configs []*config) *configSet {
	sort.Slice(configs, func(i, j int) bool { return configs[i].store.hash < configs[j].store.hash })
	kept := configs[:0:0]
	for lo := 0; lo < len(configs); {
		hi := lo + 1
		for hi < len(configs) && configs[hi].store.hash == configs[lo].store.hash {
			hi++
		}
		group := configs[lo:hi]
		for i, c := range group {
			dominated := false
			for j, d := range group {
				if i == j || !statesEqual(c.store, d.store) || !subset(c.pending, d.pending) {
					continue
				}
				// d has the same store and pends at least as much; of two equal
				// configurations keep the first.
				if len(c.pending) < len(d.pending) || j < i {
					dominated = true
					break
				}
			}
			if !dominated {
				kept = append(kept, c)
			}
		}
		lo = hi
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].hash < kept[j].hash })
	var h uint64
	for _, c := range kept {
		h += c.hash
	}
	return &configSet{configs: kept, hash: h}
}

func setsEqual(a, b *configSet) bool {
	if a == b {
		return true
	}
	if a.hash != b.hash || len(a.configs) != len(b.configs) {
		return false
	}
	// Sorted by hash: equal sets line up, except among configurations whose hashes
	// collide, which are compared as a group.
	for i := 0; i < len(a.configs); {
		j := i + 1
		for j < len(a.configs) && a.configs[j].hash == a.configs[i].hash {
			j++
		}
		for k := i; k < j; k++ {
			if b.configs[k].hash != a.configs[i].hash {
				return false
			}
			found := false
			for l := i; l < j && !found; l++ {
				found = configsEqual(a.configs[k], b.configs[l])
			}
			if !found {
				return false
			}
		}
		i = j
	}
	return true
}

// partitionModel is the model of one partition: it knows the partition's
// unknown-outcome operations.
type partitionModel struct {
	pending []pendingOp
	byID    map[string][]int32 // the pending operations touching each id
	revokes []int32            // the pending revokes
}

// relevant returns the pending operations of c that may have to be applied before in:
// those sharing an id with it, transitively, and any revoke; for list and revoke, all.
func (m *partitionModel) relevant(pending []int32, in *Input) []int32 {
	if len(pending) == 0 {
		return nil
	}
	if in.Kind == List || in.Kind == Revoke {
		return pending
	}
	var rel []int32
	isPending := func(p int32) bool {
		_, ok := slices.BinarySearch(pending, p)
		return ok
	}
	for _, p := range m.revokes {
		if isPending(p) {
			rel = append(rel, p)
		}
	}
	var buf [4]string
	ids := append(buf[:0], touched(in)...)
	for i := 0; i < len(ids); i++ {
		for _, p := range m.byID[ids[i]] {
			if !isPending(p) || slices.Contains(rel, p) {
				continue
			}
			rel = append(rel, p)
			for _, id := range m.pending[p].ids {
				if !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
		}
	}
	slices.Sort(rel)
	return rel
}

// step is the model's step function on sets of configurations.
func (m *partitionModel) step(set *configSet, input, output interface{}) (bool, *configSet) {
	if act, ok := input.(*activation); ok {
		configs := make([]*config, len(set.configs))
		for i, c := range set.configs {
			configs[i] = newConfig(c.store, withPending(c.pending, act.op))
		}
		return true, makeSet(configs)
	}
	in := input.(*Input)
	out := output.(*Output)
	var results []*config
	var seen map[uint64][]*config
	asIs := true // a read every configuration explains without applying anything
	for _, c := range set.configs {
		if in.Kind.isRead() && observe(c.store, in, out) {
			results = append(results, c)
			continue
		}
		asIs = false
		rel := m.relevant(c.pending, in)
		if len(rel) == 0 {
			// Nothing to apply first: just the operation.
			if !in.Kind.isRead() {
				if next, ok := applyAs(c.store, in, out); ok {
					results = append(results, newConfig(next, c.pending))
				}
			}
			continue
		}
		if seen == nil {
			seen = map[uint64][]*config{}
		}
		results = m.explore(c, in, out, rel, seen, results)
	}
	if len(results) == 0 {
		return false, nil
	}
	if asIs {
		return true, set
	}
	return true, makeSet(results)
}

// explore visits the configurations reachable from c by applying relevant pending
// operations and adds to results those in which in gives the reply out, after in.
func (m *partitionModel) explore(c *config, in *Input, out *Output, rel []int32,
	seen map[uint64][]*config, results []*config) []*config {
	for _, d := range seen[c.hash] {
		if configsEqual(c, d) {
			return results
		}
	}
	seen[c.hash] = append(seen[c.hash], c)

	if in.Kind.isRead() {
		if observe(c.store, in, out) {
			return append(results, c) // what applying more reaches stays reachable
		}
	} else {
		if next, ok := applyAs(c.store, in, out); ok {
			results = append(results, newConfig(next, c.pending))
			if in.Kind == Revoke {
				// Applying more first ends in the same empty store with fewer
				// pending: dominated.
				return results
			}
		}
	}
	if !m.fixable(c, in, out, rel) {
		return results
	}
	for _, p := range rel {
		if _, ok := slices.BinarySearch(c.pending, p); !ok {
			continue
		}
		op := &m.pending[p].in
		next, _ := apply(c.store, op)
		if next == c.store || statesEqual(next, c.store) {
			continue // changes nothing here: staying pending allows more
		}
		if (in.Kind == List || in.Kind == Revoke) && !changesLiveness(c.store, op) &&
			(in.Kind == Revoke || !m.renamesFrom(c.pending, rel, op.ID)) {
			continue // see contentOnlyBefore
		}
		results = m.explore(newConfig(next, withoutPending(c.pending, p)), in, out, rel, seen, results)
	}
	return results
}

// fixable tells whether applying pending operations could still make a list's or a
// revoke's reply come out; a necessary condition, to cut the search (other kinds: true).
// A list needs, for each id it names that is not live, a pending operation that can
// make it live, and for each live id it does not name, one that can end it. A revoke
// whose count is too high needs one that can add a session, too low one that can end one.
func (m *partitionModel) fixable(c *config, in *Input, out *Output, rel []int32) bool {
	var needLive, needDead []string
	switch in.Kind {
	case List:
		ss := c.store.sessions
		i, j := 0, 0
		for i < len(ss) || j < len(out.IDs) {
			switch {
			case j == len(out.IDs) || i < len(ss) && ss[i].id < out.IDs[j]:
				needDead = append(needDead, ss[i].id)
				i++
			case i == len(ss) || out.IDs[j] < ss[i].id:
				needLive = append(needLive, out.IDs[j])
				j++
			default:
				i++
				j++
			}
		}
	case Revoke:
		n := uint64(len(c.store.sessions))
		if out.Count > n {
			needLive = []string{""} // any id
		} else if out.Count < n {
			needDead = []string{""}
		}
	default:
		return true
	}
	can := func(id string, live bool) bool {
		for _, p := range rel {
			if _, ok := slices.BinarySearch(c.pending, p); !ok {
				continue
			}
			op := &m.pending[p].in
			var ok bool
			switch op.Kind {
			case Insert, Set:
				ok = live && (id == "" || op.ID == id)
			case Destroy:
				ok = !live && (id == "" || op.ID == id)
			case Rename:
				ok = id != "" && (live && op.To == id || !live && op.From == id)
			case Revoke:
				ok = !live
			}
			if ok {
				return true
			}
		}
		return false
	}
	for _, id := range needLive {
		if !can(id, true) {
			return false
		}
	}
	for _, id := range needDead {
		if !can(id, false) {
			return false
		}
	}
	return true
}

// contentOnlyBefore: list and revoke see only which ids are live, and what decides
// whether an operation changes that (insert, destroy, set on a missing id, rename,
// revoke) is itself only which ids are live. So an operation that changes only a
// session's content (an update, a set on a live session) can wait until after a list or
// revoke: the list sees the same ids, the other operations do the same to liveness, and
// applying it afterwards gives the same store, or one whose content was destroyed anyway
// (the configuration keeping it pending then dominates). The one exception is a content
// change a rename then carries to another id, which a list can be followed by reads of;
// those are applied before a list when a rename from that id is pending. Before a revoke,
// which wipes every content, never.
func changesLiveness(s *state, op *Input) bool {
	switch op.Kind {
	case Update:
		return false
	case Set:
		_, live := s.find(op.ID)
		return !live
	}
	return true // the others change nothing unless they change liveness
}

// renamesFrom tells whether a relevant pending rename of c moves id.
func (m *partitionModel) renamesFrom(pending, rel []int32, id string) bool {
	for _, p := range rel {
		if op := &m.pending[p].in; op.Kind == Rename && op.From == id {
			if _, ok := slices.BinarySearch(pending, p); ok {
				return true
			}
		}
	}
	return false
}

// opMeta is what the visualization shows when hovering an operation.
type opMeta struct {
	client int64
	index  int
	call   int64
	ret    int64
	known  bool
}

func (m opMeta) String() string {
	if !m.known {
		return fmt.Sprintf("client %d, op #%d, call %dµs, outcome unknown: may take effect at any later point, or never",
			m.client, m.index, m.call)
	}
	return fmt.Sprintf("client %d, op #%d, call %dµs, ret %dµs", m.client, m.index, m.call, m.ret)
}

// newModel is the porcupine model of a partition whose unknown-outcome operations are
// pending (activations refer to them by index).
func newModel(pending []pendingOp) porcupine.Model {
	m := &partitionModel{pending: pending, byID: map[string][]int32{}}
	for i, op := range pending {
		if op.ids == nil {
			m.revokes = append(m.revokes, int32(i))
		}
		for _, id := range op.ids {
			m.byID[id] = append(m.byID[id], int32(i))
		}
	}
	return porcupine.Model{
		Init: func() interface{} { return makeSet([]*config{newConfig(emptyState, nil)}) },
		Step: func(st, input, output interface{}) (bool, interface{}) {
			ok, next := m.step(st.(*configSet), input, output)
			return ok, next
		},
		Equal: func(a, b interface{}) bool { return setsEqual(a.(*configSet), b.(*configSet)) },
		Hash:  func(st interface{}) uint64 { return st.(*configSet).hash },
		DescribeOperation: func(input, output interface{}) string {
			if act, ok := input.(*activation); ok {
				return describeOp(&m.pending[act.op].in, nil)
			}
			return describeOp(input.(*Input), output.(*Output))
		},
		DescribeState: func(st interface{}) string { return m.describeSet(st.(*configSet)) },
		DescribeOperationMetadata: func(info interface{}) string {
			if meta, ok := info.(opMeta); ok {
				return meta.String()
			}
			return ""
		},
	}
}

// short abbreviates a session id for display.
func short(id string) string {
	const keep = 8
	r := []rune(id)
	if len(r) <= keep+1 {
		return id
	}
	return string(r[:keep]) + "…"
}

func describeOp(in *Input, out *Output) string {
	var call string
	switch in.Kind {
	case Insert:
		call = fmt.Sprintf("insert(%s %s)", short(in.ID), in.Token)
	case Get, Touch, Destroy:
		call = fmt.Sprintf("%s(%s)", in.Kind, short(in.ID))
	case Update, Set:
		call = fmt.Sprintf("%s(%s v%d -> %s)", in.Kind, short(in.ID), in.Version, in.Token)
	case Rename:
		call = fmt.Sprintf("rename(%s -> %s)", short(in.From), short(in.To))
	case List, Revoke:
		call = fmt.Sprintf("%s(%s)", in.Kind, in.Owner)
	}
	if out == nil {
		return call + " ?"
	}
	var reply string
	switch in.Kind {
	case Insert:
		reply = map[bool]string{true: "ok", false: "taken"}[out.OK]
	case Update:
		reply = map[bool]string{true: "ok", false: "conflict"}[out.OK]
	case Get:
		if out.Found {
			reply = fmt.Sprintf("-> v%d %s", out.Version, out.Token)
		} else {
			reply = "-> none"
		}
	case Set:
		reply = fmt.Sprintf("-> v%d", out.Version)
	case Touch:
		reply = map[bool]string{true: "live", false: "missing"}[out.Live]
	case Destroy:
		reply = "done"
	case Rename:
		reply = out.Result.String()
	case List:
		ids := make([]string, len(out.IDs))
		for i, id := range out.IDs {
			ids[i] = short(id)
		}
		reply = "-> [" + strings.Join(ids, " ") + "]"
	case Revoke:
		reply = fmt.Sprintf("-> %d", out.Count)
	}
	return call + " " + reply
}

func describeState(s *state) string {
	parts := make([]string, len(s.sessions))
	for i, e := range s.sessions {
		parts[i] = fmt.Sprintf("%s: v%d %s", short(e.id), e.version, e.token)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func (m *partitionModel) describeSet(set *configSet) string {
	parts := make([]string, len(set.configs))
	for i, c := range set.configs {
		parts[i] = describeState(c.store)
		if len(c.pending) > 0 {
			ops := make([]string, len(c.pending))
			for j, p := range c.pending {
				ops[j] = fmt.Sprintf("#%d", m.pending[p].index)
			}
			parts[i] += " pending " + strings.Join(ops, " ")
		}
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "one of " + strings.Join(parts, " | ")
}
