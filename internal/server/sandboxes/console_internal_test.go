package sandboxes

import "testing"

// The console's bytes become valid UTF-8 text, and next_offset moves by the bytes the
// text stands for: a character cut at the end is left for the next read, unless it
// is all there is (a read always moves on).
func TestConsoleText(t *testing.T) {
	for _, c := range []struct {
		in   string
		text string
		used int
	}{
		{"plain\r\n", "plain\r\n", 7},
		{"é€😀", "é€😀", 9},
		{"ok \xff\xfe!", "ok \uFFFD!", 6},
		{"ab\xe2\x82", "ab", 2},               // € cut after 2 of its 3 bytes
		{"ab\xf0\x9f\x98", "ab", 2},           // 😀 cut after 3 of 4
		{"\xe2\x82", "\uFFFD", 2},             // only the cut character: replaced, not waited for
		{"ab\x82\x82\x82\x82", "ab\uFFFD", 6}, // stray continuation bytes are invalid, not cut
		{"", "", 0},
	} {
		text, used := consoleText([]byte(c.in))
		if text != c.text || used != c.used {
			t.Errorf("consoleText(%q) = %q, %d; want %q, %d", c.in, text, used, c.text, c.used)
		}
	}
}
