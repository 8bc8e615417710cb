package main

import "testing"

// Hand-written histories. Each anomaly comes with a close variant that is linearizable,
// so that a checker rejecting everything (or accepting everything) fails one of them.
// Times are microseconds; clients are 1-4; every session starts with token "t0".

// Every kind, overlapping calls, and unknown outcomes that did and did not take effect.
func TestAcceptsConcurrentHistoryWithEveryKind(t *testing.T) {
	expectLinearizable(t,
		// a and b created, each read concurrently with its insert (one before, one after).
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		rec(2, 5, 15, iGet("a"), oFound(1, "t0")),
		rec(3, 2, 12, iIns("b", "t0"), oOK(true)),
		rec(4, 3, 8, iGet("b"), oMissing()),
		// A duplicate insert is refused; an update (CAS at v1) and a set race on a: the
		// update goes first, so the set stores max(2, 1) + 1 = 3; a stale CAS fails.
		rec(4, 20, 30, iIns("a", "x"), oOK(false)),
		rec(1, 20, 40, iUpd("a", 1, "t2"), oOK(true)),
		rec(2, 25, 35, iSet("a", 1, "t3"), oVer(3)),
		rec(3, 30, 45, iUpd("a", 1, "zz"), oOK(false)),
		rec(4, 50, 60, iGet("a"), oFound(3, "t3")),
		rec(3, 50, 55, iTouch("b"), oLive(true)),
		rec(3, 56, 58, iTouch("zz"), oLive(false)),
		// Unknown outcomes: the update took effect (read back below), the destroy did
		// not (b is read and counted afterwards), and the insert of e never shows up.
		unk(1, 70, iUpd("a", 3, "t4")),
		unk(2, 70, iDel("b")),
		rec(3, 70, 80, iGet("b"), oFound(1, "t0")),
		rec(4, 90, 100, iGet("a"), oFound(4, "t4")),
		// a renamed to c while a list runs (the list goes first); the rename's other
		// outcomes, including renames onto themselves.
		rec(1, 110, 130, iRen("a", "c"), oRes(Moved)),
		rec(2, 115, 125, iList(), oIDs("b", "a")),
		rec(3, 140, 150, iRen("a", "d"), oRes(SourceMissing)),
		rec(4, 140, 150, iRen("c", "b"), oRes(TargetTaken)),
		rec(1, 140, 150, iRen("c", "c"), oRes(TargetTaken)),
		rec(2, 140, 150, iRen("q", "q"), oRes(SourceMissing)),
		rec(3, 160, 170, iGet("c"), oFound(4, "t4")),
		rec(4, 160, 170, iDel("zz"), oDone()),
		unk(1, 160, iIns("e", "t5")),
		rec(2, 180, 190, iList(), oIDs("c", "b")),
		// set on a missing id creates it at max(0, 7) + 1; an unknown get is dropped.
		rec(3, 200, 210, iSet("f", 7, "t6"), oVer(8)),
		unk(4, 200, iGet("f")),
		rec(4, 205, 215, iTouch("f"), oLive(true)),
		// Log out everywhere: b, c and f; then nothing is left.
		rec(1, 220, 230, iRevoke(), oCount(3)),
		rec(2, 240, 250, iList(), oIDs()),
		rec(3, 240, 250, iGet("c"), oMissing()),
		rec(4, 240, 250, iDel("c"), oDone()),
	)
}

// The same history's bookkeeping is checked: a wrong count in the final revoke breaks it.
func TestEveryKindHistoryBreaksOnWrongRevokeCount(t *testing.T) {
	expectAnomaly(t,
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		rec(3, 2, 12, iIns("b", "t0"), oOK(true)),
		unk(2, 70, iDel("b")),
		rec(3, 70, 80, iGet("b"), oFound(1, "t0")),
		rec(1, 110, 130, iRen("a", "c"), oRes(Moved)),
		rec(1, 220, 230, iRevoke(), oCount(3)),
	)
}

func TestLostUpdate(t *testing.T) {
	base := []Op{
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		rec(1, 20, 40, iUpd("a", 1, "x"), oOK(true)),
	}
	// Two concurrent CAS at the same expected version both succeed.
	expectAnomaly(t, append(base, rec(2, 25, 45, iUpd("a", 1, "y"), oOK(true)))...)
	// One of them conflicting is fine.
	expectLinearizable(t, append(base, rec(2, 25, 45, iUpd("a", 1, "y"), oOK(false)))...)
	// So is the second one building on the first.
	expectLinearizable(t, append(base, rec(2, 25, 45, iUpd("a", 2, "y"), oOK(true)))...)
}

// An update names the value it read (Read): after a destroy and a new insert at the same
// version (ABA), a store may refuse it; over the very value it read, never.
func TestUpdateOverAnotherValueMayBeRefused(t *testing.T) {
	base := []Op{
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		rec(2, 20, 30, iGet("a"), oFound(1, "t0")),
		rec(1, 40, 50, iDel("a"), oDone()),
		rec(1, 60, 70, iIns("a", "t1"), oOK(true)),
	}
	stale := iUpd("a", 1, "x")
	stale.Read = "t0"
	// Refused or applied: both lose nothing the model knows of.
	expectLinearizable(t, append(base, rec(2, 80, 90, stale, oOK(false)))...)
	expectLinearizable(t, append(base, rec(2, 80, 90, stale, oOK(true)))...)
	// Without the read token, the compare-and-swap is on the version alone.
	expectAnomaly(t, append(base, rec(2, 80, 90, iUpd("a", 1, "x"), oOK(false)))...)
	// Over the value it read, a refusal is an anomaly.
	fresh := iUpd("a", 1, "x")
	fresh.Read = "t1"
	expectAnomaly(t, append(base, rec(2, 80, 90, fresh, oOK(false)))...)
	// And a refusal concurrent with the new insert may place the update before it.
	expectLinearizable(t, append(base[:3], rec(1, 60, 90, iIns("a", "t1"), oOK(true)), rec(2, 80, 90, fresh, oOK(false)))...)
}

func TestResurrection(t *testing.T) {
	base := []Op{
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		rec(2, 20, 30, iGet("a"), oFound(1, "t0")),
		rec(1, 40, 50, iDel("a"), oDone()),
		rec(3, 40, 80, iIns("other", "t0"), oOK(true)), // a write, but to another session
	}
	// Read after the acknowledged destroy, concurrent with no write to a.
	expectAnomaly(t, append(base, rec(2, 60, 70, iGet("a"), oFound(1, "t0")))...)
	expectAnomaly(t, append(base, rec(2, 60, 70, iTouch("a"), oLive(true)))...)
	// The same read concurrent with the destroy may see the session.
	expectLinearizable(t, append(base, rec(2, 45, 70, iGet("a"), oFound(1, "t0")))...)
	// Or, after it, not.
	expectLinearizable(t, append(base, rec(2, 60, 70, iGet("a"), oMissing()))...)
}

func TestDoubleAppliedUpdate(t *testing.T) {
	base := []Op{
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		rec(1, 20, 30, iUpd("a", 1, "x"), oOK(true)),
	}
	// Acknowledged once at v1, but the session is at v3: applied twice.
	expectAnomaly(t, append(base, rec(2, 40, 50, iGet("a"), oFound(3, "x")))...)
	expectLinearizable(t, append(base, rec(2, 40, 50, iGet("a"), oFound(2, "x")))...)

	// The same with the update's outcome unknown: once is possible, twice is not.
	unknownBase := []Op{
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		unk(1, 20, iUpd("a", 1, "x")),
	}
	expectAnomaly(t, append(unknownBase, rec(2, 40, 50, iGet("a"), oFound(3, "x")))...)
	expectLinearizable(t, append(unknownBase, rec(2, 40, 50, iGet("a"), oFound(2, "x")))...)
}

func TestRevokeLeavesSessionAlive(t *testing.T) {
	base := []Op{
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		rec(2, 0, 10, iIns("b", "t0"), oOK(true)),
		rec(2, 20, 30, iRevoke(), oCount(2)),
	}
	expectAnomaly(t, append(base, rec(1, 40, 50, iGet("a"), oFound(1, "t0")))...)
	expectLinearizable(t, append(base, rec(1, 40, 50, iGet("a"), oMissing()))...)
	// A revoke that counts one session too few, while both were live throughout.
	expectAnomaly(t,
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		rec(2, 0, 10, iIns("b", "t0"), oOK(true)),
		rec(2, 20, 30, iRevoke(), oCount(1)),
	)
}

// A rename racing a revoke: whichever goes first, the session is gone afterwards (before:
// the revoke removes the new id; after: the rename finds no source). A store whose revoke
// missed the session under its new id is caught by a later read of the new id.
func TestRevokeMissesConcurrentlyRenamedSession(t *testing.T) {
	base := []Op{
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		rec(1, 20, 50, iRen("a", "b"), oRes(Moved)),
		rec(2, 25, 40, iRevoke(), oCount(1)),
	}
	expectAnomaly(t, append(base, rec(2, 60, 70, iGet("b"), oFound(1, "t0")))...)
	expectAnomaly(t, append(base, rec(2, 60, 70, iList(), oIDs("b")))...)
	expectLinearizable(t, append(base, rec(2, 60, 70, iGet("b"), oMissing()))...)
	expectLinearizable(t, append(base, rec(2, 60, 70, iGet("a"), oMissing()))...)
	// The revoke saw neither id (it ran between the rename's write of b and removal
	// of a, and listed neither): also an anomaly, whatever is read afterwards.
	expectAnomaly(t,
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		rec(1, 20, 50, iRen("a", "b"), oRes(Moved)),
		rec(2, 25, 40, iRevoke(), oCount(0)),
	)
}

func TestSetReusingVersion(t *testing.T) {
	base := []Op{
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		rec(1, 20, 30, iUpd("a", 1, "x"), oOK(true)), // stored: v2
	}
	// A set from a stale copy (v1) must still store above v2.
	expectAnomaly(t, append(base, rec(2, 40, 50, iSet("a", 1, "y"), oVer(2)))...)
	expectLinearizable(t, append(base, rec(2, 40, 50, iSet("a", 1, "y"), oVer(3)))...)
	// Read back: a set whose outcome is unknown cannot have reused v2 either.
	expectAnomaly(t, append(base, unk(2, 40, iSet("a", 1, "y")), rec(1, 60, 70, iGet("a"), oFound(2, "y")))...)
	expectLinearizable(t, append(base, unk(2, 40, iSet("a", 1, "y")), rec(1, 60, 70, iGet("a"), oFound(3, "y")))...)
}

func TestUpdateSucceedsAgainstReusedVersion(t *testing.T) {
	base := []Op{
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		rec(1, 20, 30, iUpd("a", 1, "x"), oOK(true)), // client 1 holds v2
		rec(2, 40, 50, iSet("a", 1, "y"), oVer(3)),   // stored: v3
	}
	// Client 1's CAS from v2 must conflict now; a store that let set reuse v2 accepts it.
	expectAnomaly(t, append(base, rec(1, 60, 70, iUpd("a", 2, "z"), oOK(true)))...)
	expectLinearizable(t, append(base, rec(1, 60, 70, iUpd("a", 2, "z"), oOK(false)))...)
	expectLinearizable(t, append(base, rec(1, 60, 70, iUpd("a", 3, "z"), oOK(true)))...)
}

func TestListMissingLiveID(t *testing.T) {
	base := []Op{
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		rec(2, 0, 10, iIns("b", "t0"), oOK(true)),
	}
	expectAnomaly(t, append(base, rec(3, 20, 30, iList(), oIDs("a")))...)
	expectLinearizable(t, append(base, rec(3, 20, 30, iList(), oIDs("b", "a")))...)
	// Concurrent with b's insert, the list may miss b.
	expectLinearizable(t, rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		rec(2, 20, 40, iIns("b", "t0"), oOK(true)),
		rec(3, 25, 35, iList(), oIDs("a")))
	// A list naming a session twice is not the set of live sessions.
	expectAnomaly(t, append(base, rec(3, 20, 30, iList(), oIDs("a", "b", "a")))...)
	// Nor is one naming a session that is not there.
	expectAnomaly(t, append(base, rec(3, 20, 30, iList(), oIDs("a", "b", "c")))...)
}

func TestUnknownUpdateEffectShowsLater(t *testing.T) {
	expectLinearizable(t,
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		unk(1, 20, iUpd("a", 1, "x")),
		rec(2, 30, 40, iGet("a"), oFound(1, "t0")), // not yet
		rec(2, 50, 60, iGet("a"), oFound(2, "x")),  // now
		rec(3, 70, 80, iGet("a"), oFound(2, "x")),
	)
	// An effect can land long after other operations of the same client: this CAS only
	// matches after another client's update.
	expectLinearizable(t,
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		unk(1, 5, iUpd("a", 2, "late")),
		rec(2, 20, 30, iUpd("a", 1, "x"), oOK(true)),
		rec(1, 20, 30, iGet("a"), oFound(2, "x")),
		rec(2, 40, 50, iGet("a"), oFound(3, "late")),
	)
	// Once seen, an effect cannot be undone.
	expectAnomaly(t,
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		unk(1, 20, iUpd("a", 1, "x")),
		rec(2, 50, 60, iGet("a"), oFound(2, "x")),
		rec(3, 70, 80, iGet("a"), oFound(1, "t0")),
	)
	// And an unknown outcome cannot be the effect of something else.
	expectAnomaly(t,
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		unk(1, 20, iUpd("a", 1, "x")),
		rec(2, 50, 60, iGet("a"), oFound(2, "y")),
	)
	// Nor can it take effect before its call.
	expectAnomaly(t,
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		rec(2, 12, 18, iGet("a"), oFound(2, "x")),
		unk(1, 20, iUpd("a", 1, "x")),
	)
}

func TestUnknownUpdateEffectNeverShows(t *testing.T) {
	expectLinearizable(t,
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		unk(1, 20, iUpd("a", 1, "x")),
		rec(2, 30, 40, iGet("a"), oFound(1, "t0")),
		rec(2, 50, 60, iGet("a"), oFound(1, "t0")),
		rec(3, 70, 80, iUpd("a", 1, "y"), oOK(true)), // and now it never can
		rec(3, 90, 100, iGet("a"), oFound(2, "y")),
	)
	// Its effect never showing still leaves the later write's effect to be checked.
	expectAnomaly(t,
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		unk(1, 20, iUpd("a", 1, "x")),
		rec(3, 70, 80, iUpd("a", 1, "y"), oOK(true)),
		rec(3, 90, 100, iGet("a"), oFound(3, "y")),
	)
}

// Unknown outcomes of the other mutating kinds, each both ways.
func TestUnknownOutcomesOfOtherWrites(t *testing.T) {
	ins := rec(1, 0, 10, iIns("a", "t0"), oOK(true))
	for _, tc := range []struct {
		name   string
		op     Op
		effect Op // a read seeing the effect
		none   Op // a read seeing no effect
		never  Op // a read neither can explain
	}{
		{"insert", unk(2, 20, iIns("b", "t1")),
			rec(3, 30, 40, iGet("b"), oFound(1, "t1")), rec(3, 30, 40, iGet("b"), oMissing()),
			rec(3, 30, 40, iGet("b"), oFound(2, "t1"))},
		{"set", unk(2, 20, iSet("a", 5, "t1")),
			rec(3, 30, 40, iGet("a"), oFound(6, "t1")), rec(3, 30, 40, iGet("a"), oFound(1, "t0")),
			rec(3, 30, 40, iGet("a"), oFound(5, "t1"))},
		{"destroy", unk(2, 20, iDel("a")),
			rec(3, 30, 40, iGet("a"), oMissing()), rec(3, 30, 40, iGet("a"), oFound(1, "t0")),
			rec(3, 30, 40, iGet("a"), oFound(2, "t0"))},
		{"rename", unk(2, 20, iRen("a", "b")),
			rec(3, 30, 40, iList(), oIDs("b")), rec(3, 30, 40, iList(), oIDs("a")),
			rec(3, 30, 40, iList(), oIDs("a", "b"))},
		{"revoke", unk(2, 20, iRevoke()),
			rec(3, 30, 40, iList(), oIDs()), rec(3, 30, 40, iList(), oIDs("a")),
			rec(3, 30, 40, iList(), oIDs("b"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectLinearizable(t, ins, tc.op, tc.effect)
			expectLinearizable(t, ins, tc.op, tc.none)
			expectAnomaly(t, ins, tc.op, tc.never)
			// The effect, once seen, stays.
			expectAnomaly(t, ins, tc.op, tc.effect, rec(3, 50, 60, tc.none.In, *tc.none.Out))
		})
	}
}

// Unknown-outcome writes that nothing could observe are left out of the check; an
// observable one is kept.
func TestUnobservableUnknownWritesAreDropped(t *testing.T) {
	p := partition(
		rec(1, 0, 10, iIns("a", "t0"), oOK(true)),
		unk(1, 20, iUpd("a", 1, "x")), // nothing touches a afterwards: dropped
		unk(2, 5, iIns("b", "t0")),    // b is read after its call: kept
		rec(3, 30, 40, iGet("b"), oMissing()),
		unk(3, 50, iGet("c")),      // unknown read: dropped
		unk(2, 50, iRen("c", "d")), // c and d touched by nothing else: dropped
		rec(4, 3, 8, iGet("a"), oMissing()),
	)
	if got := countOps(p); got != 4 {
		t.Errorf("want 4 operations checked, got %d", got)
	}
	if r := CheckPartition(p, 0); r.Verdict != Linearizable {
		t.Errorf("want linearizable, got %v", r.Verdict)
	}
	// Unknown writes on the same id are kept: one can feed another that is observed
	// (an insert of b renamed onto an id that is read later).
	q := partition(
		unk(1, 5, iIns("b", "t0")),
		unk(2, 50, iRen("b", "d")),
		rec(3, 60, 70, iGet("d"), oFound(1, "t0")),
	)
	if got := countOps(q); got != 3 {
		t.Errorf("want 3 operations checked, got %d", got)
	}
	if r := CheckPartition(q, 0); r.Verdict != Linearizable {
		t.Errorf("want linearizable, got %v", r.Verdict)
	}
	// A list after the call makes every unknown write observable.
	p.Ops = append(p.Ops, rec(4, 60, 70, iList(), oIDs("a")))
	if got := countOps(p); got != 7 {
		t.Errorf("want 7 operations checked, got %d", got)
	}
	if r := CheckPartition(p, 0); r.Verdict != Linearizable {
		t.Errorf("want linearizable, got %v", r.Verdict)
	}
}

func countOps(p Partition) int {
	ops, _ := toOperations(p)
	return len(ops)
}

// A list needs some pending operations applied before it; an update that a pending
// rename then carries to the listed id has to be applied first too, or a later read of
// the new id cannot be explained.
func TestUnknownUpdateCarriedByUnknownRename(t *testing.T) {
	base := []Op{
		rec(1, 0, 10, iIns("x", "t0"), oOK(true)),
		unk(1, 20, iUpd("x", 1, "u")),
		unk(2, 30, iRen("x", "y")),
		rec(3, 50, 60, iList(), oIDs("y")),
	}
	expectLinearizable(t, append(base, rec(3, 70, 80, iGet("y"), oFound(2, "u")))...)
	expectLinearizable(t, append(base, rec(3, 70, 80, iGet("y"), oFound(1, "t0")))...)
	expectAnomaly(t, append(base, rec(3, 70, 80, iGet("y"), oFound(2, "t0")))...)
	// The same before a revoke: the count is all it sees.
	expectLinearizable(t,
		rec(1, 0, 10, iIns("x", "t0"), oOK(true)),
		unk(1, 20, iUpd("x", 1, "u")),
		unk(2, 30, iRen("x", "y")),
		rec(3, 50, 60, iRevoke(), oCount(1)),
		rec(3, 70, 80, iList(), oIDs()),
	)
}
