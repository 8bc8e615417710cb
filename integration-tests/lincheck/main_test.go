package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (int, []FileSummary, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	status := run(args, &stdout, &stderr)
	var summaries []FileSummary
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if line == "" {
			continue
		}
		var s FileSummary
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("stdout line %q: %v", line, err)
		}
		summaries = append(summaries, s)
	}
	return status, summaries, stderr.String()
}

func TestCLIPassingFile(t *testing.T) {
	status, out, stderr := runCLI(t, "testdata/pass.json")
	if status != exitOK {
		t.Fatalf("exit %d, want 0; stderr: %s", status, stderr)
	}
	want := []FileSummary{{File: "testdata/pass.json", Backend: "memory", Scenario: "testdata-pass",
		Partitions: 2, Ops: 17, Unknown: 3, AnomalousPartitions: []string{}}}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("got %+v, want %+v", out, want)
	}
}

func TestCLIFailingFile(t *testing.T) {
	dir := t.TempDir()
	status, out, stderr := runCLI(t, "--html", dir, "testdata/fail.json", "testdata/pass.json")
	if status != exitAnomaly {
		t.Fatalf("exit %d, want 1; stderr: %s", status, stderr)
	}
	if len(out) != 2 || out[0].Anomalies != 1 || !slices.Equal(out[0].AnomalousPartitions, []string{"owner-1"}) ||
		out[1].Anomalies != 0 {
		t.Errorf("got %+v", out)
	}
	if !strings.Contains(stderr, `partition "owner-1" is not linearizable`) {
		t.Errorf("stderr does not name the partition: %s", stderr)
	}
	// The visualization of the failing partition, and only that.
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 || filepath.Base(files[0]) != "fail-owner-1.html" {
		t.Fatalf("html files: %v", files)
	}
	html, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(html, []byte("update(abc v1 -\\u003e 2-2) ok")) {
		t.Errorf("the visualization does not describe the operations readably")
	}
}

func TestCLIInputError(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	doc := `{"backend": "b", "scenario": "s", "partitions": [{"key": "k", "ops": [
		{"client": 1, "call": 0, "ret": 5, "op": {"kind": "upsert", "id": "a"}, "out": {}}]}]}`
	if err := os.WriteFile(bad, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	// An input error wins over an anomaly; the other files are still checked.
	status, out, stderr := runCLI(t, "testdata/fail.json", bad)
	if status != exitInputError {
		t.Fatalf("exit %d, want 2", status)
	}
	if !strings.Contains(stderr, `partition "k": op #0 (kind "upsert", client 1, call 0): op: unknown kind "upsert"`) {
		t.Errorf("stderr does not name the op: %s", stderr)
	}
	if len(out) != 1 || out[0].File != "testdata/fail.json" {
		t.Errorf("got %+v", out)
	}
	if status, _, _ := runCLI(t, "testdata/missing.json"); status != exitInputError {
		t.Errorf("missing file: exit %d, want 2", status)
	}
	if status, _, _ := runCLI(t); status != exitInputError {
		t.Errorf("no file: exit %d, want 2", status)
	}
	if status, _, _ := runCLI(t, "--timeout", "soon", "testdata/pass.json"); status != exitInputError {
		t.Errorf("bad flag: exit %d, want 2", status)
	}
}

// writeHistory writes partitions in the input format.
func writeHistory(t *testing.T, path string, parts ...Partition) {
	t.Helper()
	type rec struct {
		Client int64          `json:"client"`
		Call   int64          `json:"call"`
		Ret    *int64         `json:"ret"`
		Op     map[string]any `json:"op"`
		Out    map[string]any `json:"out"`
	}
	type part struct {
		Key string `json:"key"`
		Ops []rec  `json:"ops"`
	}
	doc := struct {
		Backend    string `json:"backend"`
		Scenario   string `json:"scenario"`
		Partitions []part `json:"partitions"`
	}{Backend: "sim", Scenario: "generated"}
	for _, p := range parts {
		jp := part{Key: p.Key, Ops: []rec{}}
		for _, op := range p.Ops {
			in := op.In
			r := rec{Client: op.Client, Call: op.Call, Op: map[string]any{"kind": in.Kind.String()}}
			for _, f := range opFieldsOf[in.Kind] {
				r.Op[f] = map[string]any{"id": in.ID, "token": in.Token, "version": in.Version,
					"from": in.From, "to": in.To, "owner": in.Owner}[f]
			}
			if out := op.Out; out != nil {
				r.Ret = &op.Ret
				r.Out = map[string]any{}
				for _, f := range outFieldsOf[in.Kind] {
					r.Out[f] = map[string]any{"ok": out.OK, "found": out.Found, "version": out.Version,
						"live": out.Live, "result": out.Result.String(), "ids": out.IDs, "count": out.Count}[f]
				}
				if in.Kind == Get && out.Found {
					r.Out["version"], r.Out["token"] = out.Version, out.Token
				}
			}
			jp.Ops = append(jp.Ops, r)
		}
		doc.Partitions = append(doc.Partitions, jp)
	}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A generated history survives the trip through the file format.
func TestFileRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ops := simulate(rng, 4, 50, 0.1, 100, anyOps{[]string{"a", "b", "c"}, [9]int{3, 3, 3, 2, 1, 2, 2, 1, 1}})
	p := partition(ops...)
	path := filepath.Join(t.TempDir(), "h.json")
	writeHistory(t, path, p)
	h, err := readHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h.Partitions, []Partition{p}) {
		t.Fatalf("round trip changed the history")
	}
	if status, out, stderr := runCLI(t, path); status != exitOK || out[0].Ops != 200 {
		t.Errorf("exit %d, %+v; stderr: %s", status, out, stderr)
	}
}

// A partition the checker cannot finish in time is reported, and is not a pass.
func TestCLITimeout(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 3000))
	ops := simulate(rng, 8, 3000/8, 0.05, 1000, newUsers(5, 2, 0.002))
	var end int64
	for _, op := range ops {
		end = max(end, op.Call, op.Ret)
	}
	// Proving this one not linearizable takes the checker a second or more.
	ops = append(ops, rec(99, end+1, end+2, iGet("counter-0"), oFound(1000, "x")))
	slow := partition(ops...)
	slow.Key = "slow"
	dir := t.TempDir()
	path := filepath.Join(dir, "slow.json")
	writeHistory(t, path, slow)

	status, out, stderr := runCLI(t, "--timeout", "10ms", path, "testdata/pass.json")
	if status != exitTimeout {
		t.Fatalf("exit %d, want 3; stderr: %s", status, stderr)
	}
	if out[0].TimedOut != 1 || out[0].Anomalies != 0 || !strings.Contains(stderr, `partition "slow" timed out`) {
		t.Errorf("got %+v; stderr: %s", out, stderr)
	}
	// An anomaly elsewhere decides the status.
	if status, _, _ := runCLI(t, "--timeout", "10ms", path, "testdata/fail.json"); status != exitAnomaly {
		t.Errorf("exit %d, want 1", status)
	}
}
