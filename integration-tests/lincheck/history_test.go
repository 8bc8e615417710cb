package main

import (
	"reflect"
	"strings"
	"testing"
)

func parseOne(t *testing.T, ops string) (*History, error) {
	t.Helper()
	doc := `{"backend": "b", "scenario": "s", "partitions": [{"key": "owner-0", "ops": [` + ops + `]}]}`
	return ParseHistory(strings.NewReader(doc))
}

func TestParsesEveryKind(t *testing.T) {
	h, err := parseOne(t, `
		{"client": 1, "call": 0, "ret": 5, "op": {"kind": "insert", "id": "a", "token": "t"}, "out": {"ok": true}},
		{"client": 1, "call": 1, "ret": 5, "op": {"kind": "get", "id": "a"}, "out": {"found": true, "version": 3, "token": "t"}},
		{"client": 1, "call": 2, "ret": 5, "op": {"kind": "get", "id": "a", "token": null}, "out": {"found": false, "version": null}},
		{"client": 1, "call": 3, "ret": 5, "op": {"kind": "update", "id": "a", "version": 18446744073709551615, "token": "t"}, "out": {"ok": false}},
		{"client": 1, "call": 3, "ret": 5, "op": {"kind": "update", "id": "a", "version": 2, "token": "t", "read": "r"}, "out": {"ok": true}},
		{"client": 1, "call": 4, "ret": 5, "op": {"kind": "set", "id": "a", "version": 0, "token": "t"}, "out": {"version": 7}},
		{"client": 1, "call": 5, "ret": 5, "op": {"kind": "touch", "id": "a"}, "out": {"live": true}},
		{"client": 1, "call": 5, "ret": 6, "op": {"kind": "destroy", "id": "a"}, "out": {}},
		{"client": 1, "call": 6, "ret": 7, "op": {"kind": "rename", "from": "a", "to": "b"}, "out": {"result": "target_taken"}},
		{"client": 1, "call": 7, "ret": 8, "op": {"kind": "list", "owner": "u"}, "out": {"ids": ["z", "b", "a"]}},
		{"client": 1, "call": 8, "ret": 9, "op": {"kind": "revoke", "owner": "u"}, "out": {"count": 2}},
		{"client": 2, "call": 9, "ret": null, "op": {"kind": "revoke", "owner": "u"}, "out": null}`)
	if err != nil {
		t.Fatal(err)
	}
	if h.Backend != "b" || h.Scenario != "s" || len(h.Partitions) != 1 || h.Partitions[0].Key != "owner-0" {
		t.Fatalf("bad header: %+v", h)
	}
	ops := h.Partitions[0].Ops
	want := []Op{
		rec(1, 0, 5, iIns("a", "t"), oOK(true)),
		rec(1, 1, 5, iGet("a"), oFound(3, "t")),
		rec(1, 2, 5, iGet("a"), oMissing()),
		rec(1, 3, 5, iUpd("a", 1<<64-1, "t"), oOK(false)),
		rec(1, 3, 5, Input{Kind: Update, ID: "a", Version: 2, Token: "t", Read: "r"}, oOK(true)),
		rec(1, 4, 5, iSet("a", 0, "t"), oVer(7)),
		rec(1, 5, 5, iTouch("a"), oLive(true)),
		rec(1, 5, 6, iDel("a"), oDone()),
		rec(1, 6, 7, iRen("a", "b"), oRes(TargetTaken)),
		rec(1, 7, 8, Input{Kind: List, Owner: "u"}, oIDs("a", "b", "z")),
		rec(1, 8, 9, Input{Kind: Revoke, Owner: "u"}, oCount(2)),
		unk(2, 9, Input{Kind: Revoke, Owner: "u"}),
	}
	if len(ops) != len(want) {
		t.Fatalf("got %d ops, want %d", len(ops), len(want))
	}
	for i := range want {
		want[i].Index = i
		if !reflect.DeepEqual(ops[i], want[i]) {
			t.Errorf("op #%d: got %+v (out %+v), want %+v (out %+v)", i, ops[i], ops[i].Out, want[i], want[i].Out)
		}
	}
}

func TestRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"unknown kind",
			`{"client": 1, "call": 0, "ret": 5, "op": {"kind": "upsert", "id": "a"}, "out": {}}`,
			`op #0 (kind "upsert", client 1, call 0): op: unknown kind "upsert"`},
		{"missing kind",
			`{"client": 1, "call": 0, "ret": 5, "op": {"id": "a"}, "out": {}}`,
			`op #0 (kind ?, client 1, call 0): op: missing field "kind"`},
		{"missing op field",
			`{"client": 1, "call": 0, "ret": 5, "op": {"kind": "update", "id": "a", "token": "t"}, "out": {"ok": true}}`,
			`op #0 (kind "update", client 1, call 0): op: missing field "version"`},
		{"null op field",
			`{"client": 1, "call": 0, "ret": 5, "op": {"kind": "insert", "id": null, "token": "t"}, "out": {"ok": true}}`,
			`missing field "id"`},
		{"missing out field",
			`{"client": 1, "call": 0, "ret": 5, "op": {"kind": "set", "id": "a", "version": 1, "token": "t"}, "out": {}}`,
			`out: missing field "version"`},
		{"found without version",
			`{"client": 1, "call": 0, "ret": 5, "op": {"kind": "get", "id": "a"}, "out": {"found": true, "token": "t"}}`,
			`out: missing field "version"`},
		{"not found with token",
			`{"client": 1, "call": 0, "ret": 5, "op": {"kind": "get", "id": "a"}, "out": {"found": false, "token": "t"}}`,
			`field "token" given although found is false`},
		{"field of another kind",
			`{"client": 1, "call": 0, "ret": 5, "op": {"kind": "get", "id": "a", "version": 3}, "out": {"found": false}}`,
			`field "version" does not belong to this kind`},
		{"read on a set",
			`{"client": 1, "call": 0, "ret": 5, "op": {"kind": "set", "id": "a", "version": 1, "token": "t", "read": "r"}, "out": {"version": 2}}`,
			`field "read" does not belong to this kind`},
		{"unknown op field",
			`{"client": 1, "call": 0, "ret": 5, "op": {"kind": "get", "id": "a", "ttl": 3}, "out": {"found": false}}`,
			`unknown field "ttl"`},
		{"unknown out field",
			`{"client": 1, "call": 0, "ret": 5, "op": {"kind": "destroy", "id": "a"}, "out": {"deleted": 1}}`,
			`unknown field "deleted"`},
		{"wrong type",
			`{"client": 1, "call": 0, "ret": 5, "op": {"kind": "update", "id": "a", "version": -1, "token": "t"}, "out": {"ok": true}}`,
			`field "version"`},
		{"bad rename result",
			`{"client": 1, "call": 0, "ret": 5, "op": {"kind": "rename", "from": "a", "to": "b"}, "out": {"result": "ok"}}`,
			`unknown rename result "ok"`},
		{"ret null, out not",
			`{"client": 1, "call": 0, "ret": null, "op": {"kind": "destroy", "id": "a"}, "out": {}}`,
			`"ret" is null but "out" is not`},
		{"out null, ret not",
			`{"client": 1, "call": 0, "ret": 5, "op": {"kind": "destroy", "id": "a"}, "out": null}`,
			`"out" is null but "ret" is not`},
		{"missing ret",
			`{"client": 1, "call": 0, "op": {"kind": "destroy", "id": "a"}, "out": null}`,
			`missing field "ret"`},
		{"missing client",
			`{"call": 0, "ret": 5, "op": {"kind": "destroy", "id": "a"}, "out": {}}`,
			`op #0 (kind "destroy", client ?, call 0): missing field "client"`},
		{"ret before call",
			`{"client": 1, "call": 10, "ret": 5, "op": {"kind": "destroy", "id": "a"}, "out": {}}`,
			`ret 5 before call 10`},
		{"fractional time",
			`{"client": 1, "call": 1.5, "ret": 5, "op": {"kind": "destroy", "id": "a"}, "out": {}}`,
			`op #0 (kind destroy): json: cannot unmarshal number 1.5`},
		{"unknown record field",
			`{"client": 1, "call": 0, "ret": 5, "op": {"kind": "destroy", "id": "a"}, "out": {}, "note": "x"}`,
			`unknown field "note"`},
		{"owners differ",
			`{"client": 1, "call": 0, "ret": 5, "op": {"kind": "list", "owner": "u"}, "out": {"ids": []}},
			 {"client": 1, "call": 6, "ret": 7, "op": {"kind": "revoke", "owner": "v"}, "out": {"count": 0}}`,
			`op #1 (revoke, client 1, call 6): owner "v", but earlier list/revoke ops name "u"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseOne(t, tc.doc)
			if err == nil {
				t.Fatalf("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestRejectsBadFiles(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`{"scenario": "s", "partitions": []}`, `missing field "backend"`},
		{`{"backend": "b", "partitions": []}`, `missing field "scenario"`},
		{`{"backend": "b", "scenario": "s"}`, `missing field "partitions"`},
		{`{"backend": "b", "scenario": "s", "partitions": [{"ops": []}]}`, `missing field "key"`},
		{`{"backend": "b", "scenario": "s", "partitions": [{"key": "k"}]}`, `missing field "ops"`},
		{`{"backend": "b", "scenario": "s", "partitions": [{"key": "k", "ops": []}, {"key": "k", "ops": []}]}`, `duplicate key "k"`},
		{`{"backend": "b", "scenario": "s", "partitions": []} {}`, `data after the top-level object`},
		{`{"backend": "b", "scenario": "s", "partitions": [], "extra": 1}`, `unknown field "extra"`},
	} {
		_, err := ParseHistory(strings.NewReader(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got error %v, want one containing %q", tc.doc, err, tc.want)
		}
	}
}
