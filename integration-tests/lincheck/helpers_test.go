package main

import (
	"sort"
	"testing"
	"time"
)

// Builders for hand-written histories: rec(client, call, ret, input, output) for an
// operation that returned, unk(client, call, input) for one whose outcome is unknown.

func rec(client, call, ret int64, in Input, out Output) Op {
	return Op{Client: client, Call: call, Ret: ret, In: in, Out: &out}
}

func unk(client, call int64, in Input) Op {
	return Op{Client: client, Call: call, In: in}
}

func iIns(id, tok string) Input { return Input{Kind: Insert, ID: id, Token: tok} }
func iGet(id string) Input      { return Input{Kind: Get, ID: id} }
func iUpd(id string, v uint64, tok string) Input {
	return Input{Kind: Update, ID: id, Version: v, Token: tok}
}
func iSet(id string, v uint64, tok string) Input {
	return Input{Kind: Set, ID: id, Version: v, Token: tok}
}
func iTouch(id string) Input     { return Input{Kind: Touch, ID: id} }
func iDel(id string) Input       { return Input{Kind: Destroy, ID: id} }
func iRen(from, to string) Input { return Input{Kind: Rename, From: from, To: to} }
func iList() Input               { return Input{Kind: List, Owner: "owner-0"} }
func iRevoke() Input             { return Input{Kind: Revoke, Owner: "owner-0"} }
func oOK(ok bool) Output         { return Output{OK: ok} }
func oFound(v uint64, tok string) Output {
	return Output{Found: true, Version: v, Token: tok}
}
func oMissing() Output           { return Output{} }
func oVer(w uint64) Output       { return Output{Version: w} }
func oLive(live bool) Output     { return Output{Live: live} }
func oDone() Output              { return Output{} }
func oRes(r RenameResult) Output { return Output{Result: r} }
func oCount(n uint64) Output     { return Output{Count: n} }
func oIDs(ids ...string) Output {
	s := append([]string{}, ids...)
	sort.Strings(s)
	return Output{IDs: s}
}

func partition(ops ...Op) Partition {
	p := Partition{Key: "owner-0", Ops: append([]Op{}, ops...)}
	for i := range p.Ops {
		p.Ops[i].Index = i
	}
	return p
}

// verdict checks a hand-written history; hand-written histories are small, so anything
// but a prompt verdict is a failure.
func verdict(t *testing.T, ops ...Op) Verdict {
	t.Helper()
	r := CheckPartition(partition(ops...), 10*time.Second)
	if r.Verdict == TimedOut {
		t.Fatalf("checking %d ops timed out", len(ops))
	}
	return r.Verdict
}

func expectLinearizable(t *testing.T, ops ...Op) {
	t.Helper()
	if v := verdict(t, ops...); v != Linearizable {
		t.Errorf("want linearizable, got %v", v)
	}
}

func expectAnomaly(t *testing.T, ops ...Op) {
	t.Helper()
	if v := verdict(t, ops...); v != Anomaly {
		t.Errorf("want an anomaly, got %v", v)
	}
}
