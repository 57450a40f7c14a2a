package image

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"
)

// newcEntry is what the test reader decodes from one archive member.
type newcEntry struct {
	name                       string
	ino, mode, uid, gid, nlink uint32
	mtime                      uint32
	rmajor, rminor             uint32
	data                       []byte
}

// readNewc is an independent decoder of the newc format (as the kernel reads it): it checks
// magic, hex fields and 4-byte alignment of headers, names and data.
func readNewc(t *testing.T, b []byte) []newcEntry {
	t.Helper()
	var out []newcEntry
	off := 0
	for {
		if off%4 != 0 {
			t.Fatalf("header at offset %d is not 4-byte aligned", off)
		}
		if off+110 > len(b) {
			t.Fatalf("truncated header at %d", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		f := make([]uint32, 13)
		for i := range f {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("field %d at %d: %v", i, off, err)
			}
			f[i] = uint32(v)
		}
		namesize, filesize := int(f[11]), int(f[6])
		nameStart := off + 110
		name := b[nameStart : nameStart+namesize]
		if name[len(name)-1] != 0 {
			t.Fatalf("name at %d not NUL-terminated", nameStart)
		}
		dataStart := align4(nameStart + namesize)
		e := newcEntry{
			name: string(name[:len(name)-1]), ino: f[0], mode: f[1], uid: f[2], gid: f[3], nlink: f[4],
			mtime: f[5], rmajor: f[9], rminor: f[10], data: b[dataStart : dataStart+filesize],
		}
		off = align4(dataStart + filesize)
		if e.name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, e)
	}
}

func TestCPIORoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := newCPIOWriter(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Dir("bin", 0o755))
	must(w.File("bin/busybox", 0o755, []byte("ELF-ish payload of odd length")))
	must(w.File("init", 0o700, []byte("#!/bin/sh\n")))
	must(w.File("empty", 0o644, nil))
	must(w.Symlink("sbin", "bin"))
	must(w.Dir("dev", 0o755))
	must(w.CharDev("dev/console", 0o600, 5, 1))
	must(w.Close())

	got := readNewc(t, buf.Bytes())
	want := []struct {
		name string
		mode uint32
		data string
	}{
		{"bin", 0o040755, ""},
		{"bin/busybox", 0o100755, "ELF-ish payload of odd length"},
		{"init", 0o100700, "#!/bin/sh\n"},
		{"empty", 0o100644, ""},
		{"sbin", 0o120777, "bin"},
		{"dev", 0o040755, ""},
		{"dev/console", 0o020600, ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	inos := map[uint32]bool{}
	for i, w := range want {
		g := got[i]
		if g.name != w.name || g.mode != w.mode || string(g.data) != w.data {
			t.Errorf("entry %d = %q %o %q, want %q %o %q", i, g.name, g.mode, g.data, w.name, w.mode, w.data)
		}
		if g.mtime != 0 || g.uid != 0 || g.gid != 0 {
			t.Errorf("entry %q: mtime/uid/gid = %d/%d/%d, want zeros (reproducible)", g.name, g.mtime, g.uid, g.gid)
		}
		if inos[g.ino] {
			t.Errorf("entry %q reuses inode %d", g.name, g.ino)
		}
		inos[g.ino] = true
	}
	if c := got[6]; c.rmajor != 5 || c.rminor != 1 {
		t.Errorf("dev/console rdev = %d:%d, want 5:1", c.rmajor, c.rminor)
	}

	// Same input, same bytes: initrd hashes are stable.
	var again bytes.Buffer
	w2 := newCPIOWriter(&again)
	must(w2.Dir("bin", 0o755))
	must(w2.File("bin/busybox", 0o755, []byte("ELF-ish payload of odd length")))
	must(w2.File("init", 0o700, []byte("#!/bin/sh\n")))
	must(w2.File("empty", 0o644, nil))
	must(w2.Symlink("sbin", "bin"))
	must(w2.Dir("dev", 0o755))
	must(w2.CharDev("dev/console", 0o600, 5, 1))
	must(w2.Close())
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("cpio output is not deterministic")
	}
}

func TestCPIORejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "/abs", "a/../b", "..", "a//b", "./x", "TRAILER!!!", "nul\x00"} {
		w := newCPIOWriter(&bytes.Buffer{})
		if err := w.File(name, 0o644, nil); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
	w := newCPIOWriter(&bytes.Buffer{})
	if err := w.File("x", 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.File("x", 0o644, nil); err == nil {
		t.Error("duplicate entry accepted")
	}
}

func TestCPIOManyEntriesAlign(t *testing.T) {
	// Names and sizes of every residue mod 4 keep headers aligned.
	var buf bytes.Buffer
	w := newCPIOWriter(&buf)
	for i := 0; i < 16; i++ {
		name := fmt.Sprintf("f%s", bytes.Repeat([]byte("x"), i))
		if err := w.File(name, 0o644, bytes.Repeat([]byte{byte(i)}, i*3)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := readNewc(t, buf.Bytes())
	if len(got) != 16 {
		t.Fatalf("got %d entries", len(got))
	}
	for i, e := range got {
		if len(e.data) != i*3 {
			t.Errorf("entry %d has %d bytes, want %d", i, len(e.data), i*3)
		}
	}
}
