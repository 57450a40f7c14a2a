package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/wrennhq/wrenn/internal/atomicfile"
	"github.com/wrennhq/wrenn/internal/lifecycle"
)

// recordFile is the sandbox's persisted state under its directory; the agent rebuilds
// its table from these files after a restart.
const recordFile = "sandbox.json"

// record is one sandbox as written to disk. The envd token is a machine-local secret
// the agent must present to the guest; the file is 0600 under a 0700 directory.
type record struct {
	Spec  Spec            `json:"spec"`
	State lifecycle.State `json:"state"`
	Slot  int             `json:"slot"` // 0 = none
	Token string          `json:"envd_token,omitempty"`
	// VMM names the driver that runs (or ran) the sandbox's VM: only that driver can
	// adopt it or restore its snapshots. "" in records written before it was kept
	// (they were all qemu's).
	VMM        string    `json:"vmm,omitempty"`
	Kernel     string    `json:"kernel"`
	Initrd     string    `json:"initrd"`
	CreatedAt  time.Time `json:"created_at"`
	LastActive time.Time `json:"last_active"`
	Error      string    `json:"error,omitempty"`
}

// writeRecord replaces dir/sandbox.json atomically (temp file + fsync + rename), so a
// crash leaves either the old or the new record, never half of one.
func writeRecord(dir string, r *record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, recordFile), b, 0o600); err != nil {
		return fmt.Errorf("write record in %s: %w", dir, err)
	}
	return nil
}

func readRecord(dir string) (*record, error) {
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(dir, recordFile), err)
	}
	return &r, nil
}
