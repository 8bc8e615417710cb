// Command lincheck checks recorded histories of session-store operations for
// linearizability with porcupine. See README.md for the file format and exit codes.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Exit statuses.
const (
	exitOK         = 0
	exitAnomaly    = 1
	exitInputError = 2
	exitTimeout    = 3
)

// FileSummary is the JSON line printed for each file.
type FileSummary struct {
	File                string   `json:"file"`
	Backend             string   `json:"backend"`
	Scenario            string   `json:"scenario"`
	Partitions          int      `json:"partitions"`
	Ops                 int      `json:"ops"`
	Unknown             int      `json:"unknown"`
	Anomalies           int      `json:"anomalies"`
	TimedOut            int      `json:"timed_out"`
	AnomalousPartitions []string `json:"anomalous_partitions"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole command: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lincheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 60*time.Second, "time limit for checking each partition (0: none)")
	htmlDir := fs.String("html", "", "write porcupine's visualization of each non-linearizable partition to this directory")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: lincheck [--timeout 60s] [--html DIR] FILE...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitInputError
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitInputError
	}
	if *timeout < 0 {
		fmt.Fprintln(stderr, "lincheck: --timeout must not be negative")
		return exitInputError
	}
	if *htmlDir != "" {
		if err := os.MkdirAll(*htmlDir, 0o755); err != nil {
			fmt.Fprintf(stderr, "lincheck: %v\n", err)
			return exitInputError
		}
	}

	inputError, anomaly, timedOut := false, false, false
	for _, file := range fs.Args() {
		summary, err := checkFile(file, *timeout, *htmlDir, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "lincheck: %s: %v\n", file, err)
			inputError = true
			continue
		}
		line, _ := json.Marshal(summary)
		fmt.Fprintf(stdout, "%s\n", line)
		anomaly = anomaly || summary.Anomalies > 0
		timedOut = timedOut || summary.TimedOut > 0
	}
	switch {
	case inputError:
		return exitInputError
	case anomaly:
		return exitAnomaly
	case timedOut:
		return exitTimeout
	}
	return exitOK
}

func readHistory(file string) (*History, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseHistory(f)
}

// checkFile checks every partition of one file, on as many cores as there are, each
// partition with its own time limit. Only an unreadable or invalid file is an error.
func checkFile(file string, timeout time.Duration, htmlDir string, stderr io.Writer) (*FileSummary, error) {
	h, err := readHistory(file)
	if err != nil {
		return nil, err
	}
	s := &FileSummary{
		File:                file,
		Backend:             h.Backend,
		Scenario:            h.Scenario,
		Partitions:          len(h.Partitions),
		AnomalousPartitions: []string{},
	}
	for _, p := range h.Partitions {
		s.Ops += len(p.Ops)
		for i := range p.Ops {
			if p.Ops[i].Unknown() {
				s.Unknown++
			}
		}
	}

	results := make([]PartitionResult, len(h.Partitions))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(runtime.GOMAXPROCS(0), len(h.Partitions)) {
		wg.Go(func() {
			for i := range next {
				results[i] = CheckPartition(h.Partitions[i], timeout)
			}
		})
	}
	for i := range h.Partitions {
		next <- i
	}
	close(next)
	wg.Wait()

	stem := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	for i := range results {
		r := &results[i]
		switch r.Verdict {
		case Anomaly:
			s.Anomalies++
			s.AnomalousPartitions = append(s.AnomalousPartitions, r.Key)
			msg := fmt.Sprintf("lincheck: %s: partition %q is not linearizable (%d ops checked)", file, r.Key, r.Checked)
			if htmlDir != "" {
				path := filepath.Join(htmlDir, stem+"-"+safeName(r.Key)+".html")
				if err := r.WriteHTML(path); err != nil {
					msg += fmt.Sprintf("; writing %s failed: %v", path, err)
				} else {
					msg += "; see " + path
				}
			}
			fmt.Fprintln(stderr, msg)
		case TimedOut:
			s.TimedOut++
			fmt.Fprintf(stderr, "lincheck: %s: partition %q timed out after %v (%d ops checked)\n",
				file, r.Key, timeout, r.Checked)
		}
	}
	return s, nil
}

// safeName keeps a partition key usable as part of a file name.
func safeName(key string) string {
	var b strings.Builder
	for _, r := range key {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteRune('_')
		}
	}
	if b.Len() == 0 || strings.Trim(b.String(), ".") == "" {
		return "_"
	}
	return b.String()
}
