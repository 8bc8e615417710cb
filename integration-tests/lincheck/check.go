package main

import (
	"math"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// Verdict is the outcome of checking one partition.
type Verdict int

// The verdicts.
const (
	Linearizable Verdict = iota
	Anomaly
	TimedOut
)

func (v Verdict) String() string {
	return [...]string{"linearizable", "anomaly", "timed out"}[v]
}

// PartitionResult is what checking one partition found.
type PartitionResult struct {
	Key     string
	Verdict Verdict
	// Checked is how many operations went to porcupine (unknown-outcome reads, and
	// unknown-outcome writes nothing could observe, are left out).
	Checked int
	Elapsed time.Duration
	model   porcupine.Model
	info    porcupine.LinearizationInfo
}

// toOperations turns a partition into porcupine operations and the model to check them
// against.
//
// An operation with a known outcome is its interval. One with an unknown outcome becomes
// an activation at its call, an instant, after which the model may apply it at any point,
// or never (see model.go). Unknown-outcome reads are dropped (they change nothing and say
// nothing), and so are unknown-outcome writes whose effect nothing could observe: no
// other operation that may be linearized after its call touches an id it touches, and no
// list or revoke may. Such a write can always be left unapplied, and leaving it out
// changes no other operation's view, so dropping it keeps the verdict.
//
// Rows in the visualization: one per client, dense, in client order.
func toOperations(p Partition) ([]porcupine.Operation, porcupine.Model) {
	clients := map[int64]int{}
	for _, op := range p.Ops {
		clients[op.Client] = 0
	}
	ids := make([]int64, 0, len(clients))
	for c := range clients {
		ids = append(ids, c)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for row, c := range ids {
		clients[c] = row
	}

	observable := unknownObservable(p.Ops)
	ops := make([]porcupine.Operation, 0, len(p.Ops))
	var pending []pendingOp
	for i := range p.Ops {
		op := &p.Ops[i]
		meta := opMeta{client: op.Client, index: op.Index, call: op.Call, ret: op.Ret, known: !op.Unknown()}
		if !op.Unknown() {
			ops = append(ops, porcupine.Operation{
				ClientId: clients[op.Client],
				Input:    &op.In,
				Call:     op.Call,
				Output:   op.Out,
				Return:   op.Ret,
				Metadata: meta,
			})
			continue
		}
		if !observable[i] {
			continue
		}
		var touches []string
		if op.In.Kind != Revoke {
			touches = dedup(touched(&op.In))
		}
		ops = append(ops, porcupine.Operation{
			ClientId: clients[op.Client],
			Input:    &activation{op: int32(len(pending))},
			Call:     op.Call,
			Output:   nil,
			Return:   op.Call,
			Metadata: meta,
		})
		pending = append(pending, pendingOp{in: op.In, ids: touches, index: op.Index})
	}
	return ops, newModel(pending)
}

// touched lists the session ids an operation reads or writes; nil for list and revoke,
// which touch every session.
func touched(in *Input) []string {
	switch in.Kind {
	case Rename:
		return []string{in.From, in.To}
	case List, Revoke:
		return nil
	}
	return []string{in.ID}
}

// unknownObservable marks, for each unknown-outcome op, whether its effect could be seen
// by any other op; unknown-outcome reads are never marked.
func unknownObservable(ops []Op) []bool {
	// For each id, the latest return among ops touching it (unknown ones never return);
	// the same over list and revoke ops.
	const never = math.MaxInt64
	lastRet := map[string]int64{}
	lastRet2 := map[string]int64{} // second latest, to leave an op's own return out
	var wholeLast int64 = -1
	for i := range ops {
		op := &ops[i]
		ret := int64(never)
		if !op.Unknown() {
			ret = op.Ret
		} else if op.In.Kind.isRead() {
			continue // dropped: observes nothing
		}
		if op.In.Kind == List || op.In.Kind == Revoke {
			wholeLast = max(wholeLast, ret)
			continue
		}
		for _, id := range dedup(touched(&op.In)) {
			prev, ok := lastRet[id]
			switch {
			case !ok:
				lastRet[id] = ret
				lastRet2[id] = -1
			case ret >= prev:
				lastRet2[id] = prev
				lastRet[id] = ret
			default:
				lastRet2[id] = max(lastRet2[id], ret)
			}
		}
	}
	obs := make([]bool, len(ops))
	for i := range ops {
		op := &ops[i]
		if !op.Unknown() || op.In.Kind.isRead() {
			continue
		}
		// Another op may be linearized after this one iff it returns at or after this
		// one's call. A list or revoke sees (or undoes) every session; an unknown revoke
		// is observable through anything, conservatively.
		if wholeLast >= op.Call || op.In.Kind == Revoke {
			obs[i] = true
			continue
		}
		for _, id := range dedup(touched(&op.In)) {
			// The latest other op on id: this op's own return is the latest ("never"),
			// so the other ops' latest is at most the second latest.
			other := lastRet2[id]
			if other >= op.Call {
				obs[i] = true
			}
		}
	}
	return obs
}

func dedup(ids []string) []string {
	if len(ids) == 2 && ids[0] == ids[1] {
		return ids[:1]
	}
	return ids
}

// CheckPartition checks one partition for linearizability.
func CheckPartition(p Partition, timeout time.Duration) PartitionResult {
	ops, model := toOperations(p)
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
	r := PartitionResult{Key: p.Key, Checked: len(ops), Elapsed: time.Since(start), model: model, info: info}
	switch res {
	case porcupine.Ok:
		r.Verdict = Linearizable
	case porcupine.Illegal:
		r.Verdict = Anomaly
	default:
		r.Verdict = TimedOut
	}
	return r
}

// WriteHTML writes porcupine's visualization of the checked partition.
func (r *PartitionResult) WriteHTML(path string) error {
	return porcupine.VisualizePath(r.model, r.info, path)
}
