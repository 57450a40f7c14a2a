package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pierrec/lz4/v4"
)

// testELF returns a minimal x86-64 ELF with one PT_NOTE segment, optionally holding the Xen
// PVH entry note, followed by filler (large enough for two LZ4 legacy blocks).
func testELF(pvh bool, filler int) []byte {
	le := binary.LittleEndian
	var note bytes.Buffer
	noteType := uint32(18)
	if !pvh {
		noteType = 6 // some other Xen note
	}
	for _, v := range []uint32{4, 4, noteType} {
		binary.Write(&note, le, v)
	}
	note.WriteString("Xen\x00")
	note.Write([]byte{0, 0, 0x10, 0})

	hdr := make([]byte, 64)
	copy(hdr, "\x7fELF\x02\x01\x01")
	le.PutUint16(hdr[16:], 2)  // ET_EXEC
	le.PutUint16(hdr[18:], 62) // EM_X86_64
	le.PutUint32(hdr[20:], 1)
	le.PutUint64(hdr[32:], 64) // e_phoff
	le.PutUint16(hdr[52:], 64) // e_ehsize
	le.PutUint16(hdr[54:], 56) // e_phentsize
	le.PutUint16(hdr[56:], 1)  // e_phnum
	ph := make([]byte, 56)
	le.PutUint32(ph[0:], 4) // PT_NOTE
	le.PutUint64(ph[8:], 120)
	le.PutUint64(ph[32:], uint64(note.Len()))
	le.PutUint64(ph[40:], uint64(note.Len()))
	le.PutUint64(ph[48:], 4)
	out := append(append(hdr, ph...), note.Bytes()...)
	for i := 0; len(out) < 120+note.Len()+filler; i++ {
		out = append(out, byte(i*7), byte(i>>8), 'k', 'e', 'r', 'n', 'e', 'l')
	}
	return out
}

// lz4Legacy compresses like the kernel build (lz4 -l, then the size appended).
func lz4Legacy(t *testing.T, data []byte) []byte {
	t.Helper()
	out := []byte(magicLZ4Legacy)
	for rest := data; len(rest) > 0; {
		chunk := rest[:min(len(rest), 8<<20)]
		rest = rest[len(chunk):]
		dst := make([]byte, lz4.CompressBlockBound(len(chunk)))
		n, err := lz4.CompressBlock(chunk, dst, nil)
		if err != nil || n == 0 {
			t.Fatalf("compress block: n=%d err=%v", n, err)
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(n))
		out = append(out, dst[:n]...)
	}
	return binary.LittleEndian.AppendUint32(out, uint32(len(data)))
}

// testBzImage wraps a payload in a bzImage boot header (setup_sects=1, protocol 2.15).
func testBzImage(payload []byte) []byte {
	const payloadOffset = 100
	img := make([]byte, 1024+payloadOffset, 1024+payloadOffset+len(payload)+64)
	img[bzSetupSects] = 1
	copy(img[bzHeaderMagic:], "HdrS")
	binary.LittleEndian.PutUint16(img[bzVersion:], 0x20f)
	binary.LittleEndian.PutUint32(img[bzPayloadOffset:], payloadOffset)
	binary.LittleEndian.PutUint32(img[bzPayloadLength:], uint32(len(payload)))
	img = append(img, payload...)
	return append(img, bytes.Repeat([]byte{0xcc}, 64)...) // trailing data after the payload
}

func TestExtractVmlinux(t *testing.T) {
	ctx := context.Background()
	elfPVH := testELF(true, 9<<20) // > 8 MiB: two legacy blocks
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(elfPVH)
	zw.Close()
	var frame bytes.Buffer
	fw := lz4.NewWriter(&frame)
	fw.Write(elfPVH)
	fw.Close()

	for _, tc := range []struct {
		name    string
		payload []byte
		want    []byte
		pvh     bool
	}{
		{"lz4-legacy", lz4Legacy(t, elfPVH), elfPVH, true},
		{"lz4-frame", binary.LittleEndian.AppendUint32(frame.Bytes(), uint32(len(elfPVH))), elfPVH, true},
		{"gzip", gz.Bytes(), elfPVH, true},
		{"no-pvh-note", lz4Legacy(t, testELF(false, 1000)), testELF(false, 1000), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, pvh, err := extractVmlinux(ctx, testBzImage(tc.payload))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("vmlinux differs: got %d bytes, want %d", len(got), len(tc.want))
			}
			if pvh != tc.pvh {
				t.Errorf("pvh = %v, want %v", pvh, tc.pvh)
			}
		})
	}
}

func TestExtractVmlinuxErrors(t *testing.T) {
	ctx := context.Background()
	elfData := testELF(true, 1000)
	badSize := lz4Legacy(t, elfData)
	binary.LittleEndian.PutUint32(badSize[len(badSize)-4:], 12345)
	for _, tc := range []struct {
		name, wantErr string
		img           []byte
	}{
		{"not-bzimage", "HdrS", make([]byte, 4096)},
		{"old-protocol", "too old", func() []byte {
			img := testBzImage(lz4Legacy(t, elfData))
			binary.LittleEndian.PutUint16(img[bzVersion:], 0x206)
			return img
		}()},
		{"payload-out-of-range", "outside", func() []byte {
			img := testBzImage(lz4Legacy(t, elfData))
			binary.LittleEndian.PutUint32(img[bzPayloadLength:], 1<<30)
			return img
		}()},
		{"bzip2", "bzip2", testBzImage([]byte("BZh91AY&SY...."))},
		{"unknown", "unknown compression", testBzImage([]byte{1, 2, 3, 4, 5, 6, 7, 8})},
		{"size-mismatch", "says 12345", testBzImage(badSize)},
		{"not-elf", "not an ELF", testBzImage(lz4Legacy(t, bytes.Repeat([]byte("text"), 300)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := extractVmlinux(ctx, tc.img)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

// TestUnlz4LegacyMatchesCLI cross-checks the decoder against the lz4 tool's legacy output.
func TestUnlz4LegacyMatchesCLI(t *testing.T) {
	lz4Bin, err := exec.LookPath("lz4")
	if err != nil {
		t.Skip("lz4 CLI not installed; skipping the cross-check")
	}
	data := testELF(true, 9<<20)
	in := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(lz4Bin, "-l", "-9", "-c", in).Output()
	if err != nil {
		t.Fatalf("lz4 -l: %v", err)
	}
	got, err := unlz4Legacy(binary.LittleEndian.AppendUint32(out, uint32(len(data))))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("decoded data differs from the original")
	}
}
