package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Where metrics are served is settled at start: the token file is read and the
// listener opened, and either failing names its setting.
func TestOpenMetrics(t *testing.T) {
	dir := t.TempDir()
	good, short := filepath.Join(dir, "token"), filepath.Join(dir, "short")
	if err := os.WriteFile(good, []byte("  metrics-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(short, []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const fileVar = "WRENN_METRICS_TOKEN_FILE"
	access, ln, err := openMetrics(metricsSetting{tokenFile: good, tokenFileVar: fileVar})
	if err != nil || ln != nil || access.Token != "metrics-token-0123456789" || access.Listen != "" {
		t.Errorf("token file: %+v %v %v", access, ln, err)
	}
	for _, file := range []string{short, filepath.Join(dir, "missing")} {
		if _, _, err := openMetrics(metricsSetting{tokenFile: file, tokenFileVar: fileVar}); err == nil || !strings.HasPrefix(err.Error(), fileVar) {
			t.Errorf("token file %s: %v", file, err)
		}
	}
	access, ln, err = openMetrics(metricsSetting{listen: "127.0.0.1:0", token: "set-in-the-environment"})
	if err != nil || ln == nil || access.Token != "set-in-the-environment" {
		t.Fatalf("own listener: %+v %v", access, err)
	}
	defer ln.Close()
	// The same address again is taken: the program stops at start.
	if _, _, err := openMetrics(metricsSetting{listen: ln.Addr().String()}); err == nil || !strings.Contains(err.Error(), "metrics: listen on") {
		t.Errorf("a taken address: %v", err)
	}
}
