package agent

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wrennhq/wrenn/internal/atomicfile"
)

// RecordKeyFile is the file, in the agent's state directory, holding the key that
// seals the secrets of its sandbox records. It lives beside the agent's other
// credentials, apart from WRENN_DIR/sandboxes, so that a copy of the sandboxes alone
// opens nothing.
const RecordKeyFile = "record.key"

// LoadOrCreateRecordKey returns the record key in stateDir, making it (RecordKeySize
// random bytes, 0600) the first time. An existing file that is not a key is an error
// and is never replaced: records sealed with the lost key would no longer open.
func LoadOrCreateRecordKey(stateDir string) ([]byte, error) {
	path := filepath.Join(stateDir, RecordKeyFile)
	key, err := readRecordKey(path)
	if !errors.Is(err, os.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("record key: %w", err)
	}
	if key, err = NewRecordKey(); err != nil {
		return nil, err
	}
	err = atomicfile.Create(path, key, 0o600)
	if errors.Is(err, os.ErrExist) {
		return readRecordKey(path) // another process made it first: theirs is the key
	}
	if err != nil {
		return nil, fmt.Errorf("record key: %w", err)
	}
	return key, nil
}

func readRecordKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("read record key: %w", err)
	}
	if len(key) != RecordKeySize {
		return nil, fmt.Errorf("record key %s is malformed (%d bytes, want %d): restore it from a backup of the agent's state directory; "+
			"a new key cannot open the sandbox records sealed with the old one", path, len(key), RecordKeySize)
	}
	return key, nil
}

// NewRecordKey returns a fresh random record key, for managers whose sandboxes never
// outlive the process (`wrenn vm run`) and for tests.
func NewRecordKey() ([]byte, error) {
	key := make([]byte, RecordKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("record key: %w", err)
	}
	return key, nil
}
