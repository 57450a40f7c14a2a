package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/wrennhq/wrenn/internal/atomicfile"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/seal"
)

// recordFile is the sandbox's persisted state under its directory; the agent rebuilds
// its table from these files after a restart.
const recordFile = "sandbox.json"

// record is one sandbox as the agent knows it. On disk (0600 under a 0700 directory)
// its secrets — the envd access token the agent presents to the guest, and the
// sandbox's env vars, which users fill with API keys — are never in the clear: they
// are sealed together into Sealed with the agent's record key (package seal), so
// a copy of WRENN_DIR (a backup, a disk snapshot, a support bundle) without the key
// reveals neither.
type record struct {
	// Spec.EnvVars is in the clear only in records written before sealing; written
	// records keep it in Sealed.
	Spec  Spec            `json:"spec"`
	State lifecycle.State `json:"state"`
	Slot  int             `json:"slot"` // 0 = none
	// Token is in the clear only in records written before sealing (read, never
	// written); written records keep it in Sealed.
	Token string `json:"envd_token,omitempty"`
	// Sealed is recordSecrets, sealed for this sandbox's id. Only on disk: in memory
	// the secrets are in Token and Spec.EnvVars.
	Sealed []byte `json:"sealed,omitempty"`
	// VMM names the driver that runs (or ran) the sandbox's VM: only that driver can
	// adopt it or restore its snapshots. "" in records written before it was kept
	// (they were all qemu's).
	VMM        string    `json:"vmm,omitempty"`
	Kernel     string    `json:"kernel"`
	Initrd     string    `json:"initrd"`
	CreatedAt  time.Time `json:"created_at"`
	LastActive time.Time `json:"last_active"`
	Error      string    `json:"error,omitempty"`

	// unopened is a Sealed that did not open (another key, altered, another sandbox's).
	// It is written back as it was, never replaced, so the secrets are not lost when
	// the right key comes back.
	unopened []byte
	// inClear: read from a record that kept its secrets in the clear (written before
	// sealing); Recover seals it at once.
	inClear bool
}

// recordSecrets is the part of a record that is sealed.
type recordSecrets struct {
	EnvdToken string            `json:"envd_token,omitempty"`
	EnvVars   map[string]string `json:"env_vars,omitempty"`
}

// errRecordSealed: a record parsed, but its sealed secrets did not open.
var errRecordSealed = errors.New("sealed secrets do not open")

// RecordKeySize is the length of a record key.
const RecordKeySize = seal.KeySize

// recordAD binds a sealed blob to the sandbox and to this format's version: a record
// copied into another sandbox's directory does not open there, so one sandbox can never
// be made to run with another's token or env vars.
func recordAD(id string) []byte { return []byte("wrenn sandbox record v1\x00" + id) }

// writeRecord replaces dir/sandbox.json of sandbox id atomically (temp file + fsync +
// rename), so a crash leaves either the old or the new record, never half of one. The
// secrets are sealed afresh on every write.
func writeRecord(s *seal.Box, id, dir string, r *record) error {
	out := *r
	out.Token, out.Spec.EnvVars, out.Sealed = "", nil, r.unopened
	if out.Sealed == nil {
		plain, err := json.Marshal(recordSecrets{EnvdToken: r.Token, EnvVars: r.Spec.EnvVars})
		if err != nil {
			return fmt.Errorf("seal record %s: %w", id, err)
		}
		out.Sealed = s.Seal(plain, recordAD(id))
	}
	b, err := json.MarshalIndent(&out, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, recordFile), b, 0o600); err != nil {
		return fmt.Errorf("write record in %s: %w", dir, err)
	}
	return nil
}

// readRecord reads dir/sandbox.json of sandbox id and opens its secrets. A record
// whose secrets do not open is returned all the same, without them, with an error
// wrapping errRecordSealed: the caller decides what becomes of the sandbox. Records
// written before sealing are read as they are.
func readRecord(s *seal.Box, id, dir string) (*record, error) {
	path := filepath.Join(dir, recordFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if r.Sealed == nil {
		r.inClear = r.Token != "" || len(r.Spec.EnvVars) > 0
		return &r, nil
	}
	sealed := r.Sealed
	r.Token, r.Spec.EnvVars, r.Sealed = "", nil, nil
	var sec recordSecrets
	plain, err := s.Open(sealed, recordAD(id))
	if err == nil {
		err = json.Unmarshal(plain, &sec)
	}
	if err != nil {
		r.unopened = sealed
		return &r, fmt.Errorf("open record %s: %w: %v", id, errRecordSealed, err)
	}
	r.Token, r.Spec.EnvVars = sec.EnvdToken, sec.EnvVars
	return &r, nil
}
