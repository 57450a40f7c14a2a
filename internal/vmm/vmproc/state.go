package vmproc

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// WriteState replaces the JSON state file at path with v through a temporary file
// and a rename, so an agent that dies mid-write leaves the old state or the new one,
// never a torn file that would make a live VM unadoptable. There is deliberately no
// fsync (it would sit on every VM start's critical path): the file only matters while
// its VM runs, and a host crash that could lose it ends the VM too.
func WriteState(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state %s: %w", path, err)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write state %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state %s: %w", path, err)
	}
	return nil
}

// ReadState decodes the JSON state file at path into v. A missing file is an error
// that matches fs.ErrNotExist.
func ReadState(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse state %s: %w", path, err)
	}
	return nil
}
