package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"
)

// Randomized checks of the checker against two independent references: a plain map
// implementation of the store semantics, and, for tiny histories, a brute-force search
// over every order and every choice of effect for unknown outcomes.

type refSession struct {
	version uint64
	token   string
}

type refStore map[string]refSession

// do runs in on the store (changing it) and returns the reply.
func (m refStore) do(in Input) Output {
	cur, live := m[in.ID]
	switch in.Kind {
	case Insert:
		if live {
			return Output{OK: false}
		}
		m[in.ID] = refSession{1, in.Token}
		return Output{OK: true}
	case Get:
		if !live {
			return Output{}
		}
		return Output{Found: true, Version: cur.version, Token: cur.token}
	case Update:
		if !live || cur.version != in.Version {
			return Output{OK: false}
		}
		m[in.ID] = refSession{in.Version + 1, in.Token}
		return Output{OK: true}
	case Set:
		w := in.Version + 1
		if live && cur.version >= w {
			w = cur.version + 1
		}
		m[in.ID] = refSession{w, in.Token}
		return Output{Version: w}
	case Touch:
		return Output{Live: live}
	case Destroy:
		delete(m, in.ID)
		return Output{}
	case Rename:
		src, srcLive := m[in.From]
		_, dstLive := m[in.To]
		switch {
		case !srcLive:
			return Output{Result: SourceMissing}
		case dstLive: // includes from == to
			return Output{Result: TargetTaken}
		}
		m[in.To] = src
		delete(m, in.From)
		return Output{Result: Moved}
	case List:
		ids := []string{}
		for id := range m {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		return Output{IDs: ids}
	case Revoke:
		n := len(m)
		clear(m)
		return Output{Count: uint64(n)}
	}
	panic("bad kind")
}

func (m refStore) clone() refStore {
	c := make(refStore, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func sameOutput(kind Kind, a, b Output) bool {
	switch kind {
	case Insert, Update:
		return a.OK == b.OK
	case Get:
		return a.Found == b.Found && (!a.Found || a.Version == b.Version && a.Token == b.Token)
	case Set:
		return a.Version == b.Version
	case Touch:
		return a.Live == b.Live
	case Destroy:
		return true
	case Rename:
		return a.Result == b.Result
	case List:
		return slices.Equal(a.IDs, b.IDs)
	case Revoke:
		return a.Count == b.Count
	}
	panic("bad kind")
}

// bruteLinearizable decides linearizability by trying every order (and, for each
// unknown outcome, both choices), remembering the (operations left, store) pairs that
// failed.
func bruteLinearizable(ops []Op) bool {
	retOf := func(o *Op) int64 {
		if o.Unknown() {
			return math.MaxInt64
		}
		return o.Ret
	}
	failed := map[string]bool{}
	var search func(left uint64, st refStore) bool
	search = func(left uint64, st refStore) bool {
		if left == 0 {
			return true
		}
		key := fmt.Sprint(left, st)
		if failed[key] {
			return false
		}
		minRet := int64(math.MaxInt64)
		for i := range ops {
			if left&(1<<i) != 0 {
				minRet = min(minRet, retOf(&ops[i]))
			}
		}
		for i := range ops {
			op := &ops[i]
			if left&(1<<i) == 0 || op.Call > minRet {
				continue // done, or something else returned before this was called
			}
			rest := left &^ (1 << i)
			next := st.clone()
			got := next.do(op.In)
			switch {
			case !op.Unknown():
				if sameOutput(op.In.Kind, got, *op.Out) && search(rest, next) {
					return true
				}
			case search(rest, st) || search(rest, next):
				return true
			}
		}
		failed[key] = true
		return false
	}
	return search(1<<len(ops)-1, refStore{})
}

// simOp is an operation before its reply is known.
type simOp struct {
	op     Op
	lin    int64 // when it takes effect
	effect bool  // for unknown outcomes: whether it takes effect at all
}

// workload chooses each client's next operation at its call, from the store's state
// then and from what the client saw of its earlier operations' replies.
type workload interface {
	next(rng *rand.Rand, client int, st refStore) Input
	saw(client int, in Input, out Output)
}

// simulate builds a linearizable history: each client runs calls one after another,
// each taking effect at a random instant of its interval (an unknown outcome: at a
// random instant after its call, or never) on a reference store.
func simulate(rng *rand.Rand, clients, perClient int, unknownP float64, span int64, w workload) []Op {
	var sims []*simOp
	for c := range clients {
		t := rng.Int64N(span)
		for range perClient {
			dur := 1 + rng.Int64N(span)
			s := &simOp{op: Op{Client: int64(c), Call: t, Ret: t + dur}}
			s.lin = t + rng.Int64N(dur+1)
			if rng.Float64() < unknownP {
				s.op.Ret = 0
				s.lin = t + rng.Int64N(10*span+1)
				s.effect = rng.IntN(2) == 0
			} else {
				s.op.Out = &Output{} // known; filled in below
				s.effect = true
			}
			sims = append(sims, s)
			t += dur + rng.Int64N(span/2+1)
		}
	}
	// Calls and effects in time order; a call before an effect at the same instant.
	type event struct {
		at     int64
		effect bool
		s      *simOp
	}
	var events []event
	for _, s := range sims {
		events = append(events, event{s.op.Call, false, s}, event{s.lin, true, s})
	}
	sort.SliceStable(events, func(i, j int) bool {
		a, b := events[i], events[j]
		return a.at < b.at || a.at == b.at && !a.effect && b.effect
	})
	st := refStore{}
	for _, e := range events {
		s := e.s
		switch {
		case !e.effect:
			s.op.In = w.next(rng, int(s.op.Client), st)
		case s.effect:
			out := st.do(s.op.In)
			if s.op.Out != nil {
				*s.op.Out = out
				w.saw(int(s.op.Client), s.op.In, out)
			}
		}
	}
	sort.SliceStable(sims, func(i, j int) bool { return sims[i].op.Call < sims[j].op.Call })
	ops := make([]Op, len(sims))
	for i, s := range sims {
		ops[i] = s.op
		ops[i].Index = i
	}
	return ops
}

// anyOps chooses operations over a pool of ids, by weight per kind, writes aimed at
// the store's current state.
type anyOps struct {
	ids     []string
	weights [9]int
}

func (w anyOps) saw(int, Input, Output) {}

func (w anyOps) next(rng *rand.Rand, _ int, st refStore) Input {
	ids, weights := w.ids, w.weights
	total := 0
	for _, w := range weights {
		total += w
	}
	{
		id := ids[rng.IntN(len(ids))]
		tok := fmt.Sprintf("t%d", rng.IntN(1000))
		cur := st[id].version
		version := cur
		if rng.IntN(3) == 0 && cur > 0 {
			version = cur - 1 - uint64(rng.IntN(int(cur)))
		}
		r := rng.IntN(total)
		kind := Kind(0)
		for r >= weights[kind] {
			r -= weights[kind]
			kind++
		}
		switch kind {
		case Insert:
			return iIns(id, tok)
		case Get:
			return iGet(id)
		case Update:
			return iUpd(id, version, tok)
		case Set:
			return iSet(id, version, tok)
		case Touch:
			return iTouch(id)
		case Destroy:
			return iDel(id)
		case Rename:
			return iRen(id, ids[rng.IntN(len(ids))])
		case List:
			return iList()
		}
		return iRevoke()
	}
}

// perturb changes one reply so that it differs from what the run gave.
func perturb(rng *rand.Rand, ops []Op) {
	var known []int
	for i := range ops {
		if !ops[i].Unknown() && ops[i].In.Kind != Destroy {
			known = append(known, i)
		}
	}
	if len(known) == 0 {
		return
	}
	op := &ops[known[rng.IntN(len(known))]]
	out := *op.Out
	switch op.In.Kind {
	case Insert, Update:
		out.OK = !out.OK
	case Get:
		if out.Found && rng.IntN(2) == 0 {
			out.Version += 1 + uint64(rng.IntN(2))
		} else {
			out = Output{Found: !out.Found, Version: 1, Token: "t0"}
		}
	case Set:
		out.Version = uint64(rng.IntN(4))
	case Touch:
		out.Live = !out.Live
	case Rename:
		out.Result = RenameResult((int(out.Result) + 1 + rng.IntN(2)) % 3)
	case List:
		if len(out.IDs) > 0 && rng.IntN(2) == 0 {
			out.IDs = out.IDs[1:]
		} else {
			out.IDs = append(slices.Clone(out.IDs), "a")
			sort.Strings(out.IDs)
		}
	case Revoke:
		out.Count = uint64(rng.IntN(3))
	}
	op.Out = &out
}

// Tiny random histories, half of them with a reply changed: porcupine with this model
// must agree with the brute-force search on every one.
func TestAgreesWithBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ids := []string{"a", "b", "c"}
	pick := anyOps{ids, [9]int{3, 3, 3, 2, 1, 2, 2, 1, 1}}
	counts := map[string]int{}
	for iter := range 20000 {
		clients := 1 + rng.IntN(4)
		ops := simulate(rng, clients, 1+rng.IntN(16/clients), 0.1+0.3*rng.Float64(), 10, pick)
		if rng.IntN(2) == 0 {
			perturb(rng, ops)
		}
		want := bruteLinearizable(ops)
		p := partition(ops...)
		got := CheckPartition(p, 10*time.Second).Verdict
		if got == TimedOut {
			t.Fatalf("history %d timed out", iter)
		}
		if (got == Linearizable) != want {
			for _, op := range p.Ops {
				out := "?"
				if op.Out != nil {
					out = describeOp(&op.In, op.Out)
				}
				t.Logf("client %d [%d, %d] %s | %s", op.Client, op.Call, op.Ret, describeOp(&op.In, nil), out)
			}
			t.Fatalf("history %d: checker says %v, brute force says linearizable=%v", iter, got, want)
		}
		counts[got.String()]++
	}
	t.Logf("verdicts: %v", counts)
	if counts["linearizable"] < 5000 || counts["anomaly"] < 5000 {
		t.Errorf("too few of one verdict to mean much: %v", counts)
	}
}

// users imitates the store's users. The first clients share a few counter sessions:
// they read one and update it with compare-and-swap from the version they last saw,
// reading it again after a conflict or an unknown outcome (now and then they set it
// unconditionally instead). The others churn sessions with fresh random ids: create,
// read, touch, update, move to a new id (login), destroy, and sometimes list the owner's
// sessions or log the owner out everywhere.
type users struct {
	updaters, counters int
	revokeP            float64
	known              map[int]refSession // what each client last saw of its session
	mine               map[int]string     // each churner's session
}

func newUsers(updaters, counters int, revokeP float64) *users {
	return &users{updaters: updaters, counters: counters, revokeP: revokeP,
		known: map[int]refSession{}, mine: map[int]string{}}
}

func (u *users) saw(client int, in Input, out Output) {
	k := u.known[client]
	switch in.Kind {
	case Insert:
		if out.OK {
			k = refSession{1, in.Token}
		}
	case Get:
		k = refSession{out.Version, out.Token} // version 0: missing
		if !out.Found && client >= u.updaters {
			delete(u.mine, client) // gone: start a new one
		}
	case Update:
		if out.OK {
			k = refSession{in.Version + 1, in.Token}
		} else {
			k.version = 0 // read again
		}
	case Set:
		k = refSession{out.Version, in.Token}
	case Destroy, Revoke:
		k = refSession{}
	}
	u.known[client] = k
}

func (u *users) next(rng *rand.Rand, client int, _ refStore) Input {
	tok := fmt.Sprintf("%d-%d", client, rng.IntN(1000))
	k, seen := u.known[client]
	if client < u.updaters {
		id := fmt.Sprintf("counter-%d", client%u.counters)
		switch r := rng.IntN(100); {
		case !seen && r < 30:
			return iIns(id, tok)
		case !seen || k.version == 0 || r < 5:
			delete(u.known, client) // until the reply comes
			return iGet(id)
		case r < 10:
			return iSet(id, k.version, tok)
		case r < 95:
			delete(u.known, client)
			return iUpd(id, k.version, tok)
		default:
			return iTouch(id)
		}
	}
	if rng.Float64() < u.revokeP {
		return iRevoke()
	}
	id, ok := u.mine[client]
	if !ok {
		id = fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())
		u.mine[client] = id
		return iIns(id, tok)
	}
	switch r := rng.IntN(100); {
	case r < 40 || k.version == 0:
		return iGet(id)
	case r < 50:
		return iTouch(id)
	case r < 60:
		delete(u.known, client)
		return iUpd(id, k.version, tok)
	case r < 70:
		to := fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())
		u.mine[client] = to
		return iRen(id, to)
	case r < 85:
		delete(u.mine, client)
		return iDel(id)
	default:
		return iList()
	}
}

// Histories of the advertised size (thousands of operations, 8 clients) check quickly,
// linearizable ones and ones with an anomaly at the very end (which makes the checker
// exhaust every linearization of everything before it).
func TestLargeHistoriesCheckQuickly(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	for _, tc := range []struct {
		name     string
		ops      int
		unknownP float64
		revokeP  float64
	}{
		{"no faults", 3000, 0, 0.002},
		{"1% unknown", 3000, 0.01, 0.002},
		{"5% unknown", 3000, 0.05, 0.002},
		{"10% unknown", 2000, 0.10, 0.002},
		{"5% unknown, revoke-heavy", 2000, 0.05, 0.02},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, uint64(tc.ops)+uint64(1000*tc.unknownP)))
			ops := simulate(rng, 8, tc.ops/8, tc.unknownP, 1000, newUsers(5, 2, tc.revokeP))
			r := CheckPartition(partition(ops...), 60*time.Second)
			t.Logf("%d ops (%d checked): %v in %v", len(ops), r.Checked, r.Verdict, r.Elapsed)
			if r.Verdict != Linearizable {
				t.Fatalf("want linearizable, got %v", r.Verdict)
			}

			// A read after everything returned that no state explains.
			var end int64
			for _, op := range ops {
				end = max(end, op.Call, op.Ret)
			}
			bad := append(slices.Clone(ops), rec(99, end+1, end+2, iGet("counter-0"), oFound(1000, "x")))
			r = CheckPartition(partition(bad...), 60*time.Second)
			t.Logf("with a bad read at the end: %v in %v", r.Verdict, r.Elapsed)
			if r.Verdict != Anomaly {
				t.Fatalf("want an anomaly, got %v", r.Verdict)
			}
		})
	}
}
