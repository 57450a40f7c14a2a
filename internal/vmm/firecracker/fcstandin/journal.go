package fcstandin

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
)

// JournalEntry is one API request the stand-in received, as one line of the journal
// file: what was asked, what was answered, and why it was refused ("" when it was not).
type JournalEntry struct {
	Pid    int             `json:"pid"` // the stand-in process, so several can share a journal
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Body   json.RawMessage `json:"body,omitempty"` // a body that is not JSON is kept as a JSON string
	Status int             `json:"status"`
	Fault  string          `json:"fault"`
}

// ReadJournal reads a journal file written by stand-ins (one JSON object a line).
func ReadJournal(path string) ([]JournalEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []JournalEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e JournalEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return out, fmt.Errorf("journal %s line %d: %w", path, line, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// journal appends entries to a file opened with O_APPEND, one write a line, so the
// stand-ins of several VMs can share it.
type journal struct {
	mu sync.Mutex
	f  *os.File
}

func openJournal(path string) (*journal, error) {
	if path == "" {
		return &journal{}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open the stand-in journal: %w", err)
	}
	return &journal{f: f}, nil
}

func (j *journal) add(method, path string, body []byte, status int, fault string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return
	}
	e := JournalEntry{Pid: os.Getpid(), Method: method, Path: path, Status: status, Fault: fault}
	if len(body) > 0 {
		if json.Valid(body) {
			e.Body = json.RawMessage(compactJSON(body))
		} else {
			e.Body, _ = json.Marshal(string(body))
		}
	}
	line, err := json.Marshal(e)
	if err != nil {
		return
	}
	_, _ = j.f.Write(append(line, '\n'))
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}
