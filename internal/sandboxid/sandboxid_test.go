package sandboxid

import "testing"

func TestNewIsValidAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id, err := New()
		if err != nil {
			t.Fatal(err)
		}
		if !Valid(id) || len(id) != 20 {
			t.Fatalf("bad id %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
	for _, bad := range []string{"", "sb", "SB0123456789abcdefgh", "sb0123456789abcdefg-", "xx0123456789abcdefgh", "sb0123456789abcdefghi"} {
		if Valid(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}
