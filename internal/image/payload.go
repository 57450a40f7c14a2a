package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os/exec"

	"github.com/pierrec/lz4/v4"
)

// PVH direct boot (QEMU -kernel with an ELF that carries the Xen PHYS32 entry note) skips the
// bzImage's real-mode setup and self-decompression, which is the fastest way to boot under
// TCG. The bzImage carries the ELF as a compressed "payload"; these helpers cut it out and
// decompress it.

// bzImage boot-protocol offsets (Documentation/x86/boot.rst).
const (
	bzSetupSects    = 0x1f1
	bzHeaderMagic   = 0x202
	bzVersion       = 0x206
	bzPayloadOffset = 0x248
	bzPayloadLength = 0x24c
	bzMinVersion    = 0x208 // payload_offset/length exist from boot protocol 2.08
)

// Magic numbers of the payload formats the kernel build can produce (strings so they can be
// constants).
const (
	magicLZ4Legacy = "\x02\x21\x4c\x18"
	magicLZ4Frame  = "\x04\x22\x4d\x18"
	magicGzip      = "\x1f\x8b"
	magicXZ        = "\xfd7zXZ\x00"
	magicZstd      = "\x28\xb5\x2f\xfd"
	magicBzip2     = "BZh"
	magicLZMA      = "\x5d\x00\x00"
	magicLZO       = "\x89LZO"
	magicELF       = "\x7fELF"
)

// bzImagePayload returns the compressed payload embedded in a bzImage.
func bzImagePayload(img []byte) ([]byte, error) {
	if len(img) < bzPayloadLength+4 || string(img[bzHeaderMagic:bzHeaderMagic+4]) != "HdrS" {
		return nil, errors.New("not an x86 bzImage (no HdrS boot header)")
	}
	if v := binary.LittleEndian.Uint16(img[bzVersion:]); v < bzMinVersion {
		return nil, fmt.Errorf("bzImage boot protocol %#x is too old to locate the payload (need >= 2.08)", v)
	}
	setup := int(img[bzSetupSects])
	if setup == 0 {
		setup = 4 // boot.rst: a zero means 4 for compatibility
	}
	start := (setup+1)*512 + int(binary.LittleEndian.Uint32(img[bzPayloadOffset:]))
	length := int(binary.LittleEndian.Uint32(img[bzPayloadLength:]))
	if length <= 0 || start < 0 || start+length > len(img) {
		return nil, fmt.Errorf("bzImage payload [%d, +%d) lies outside the %d-byte file", start, length, len(img))
	}
	return img[start : start+length], nil
}

// extractVmlinux turns a bzImage into the uncompressed vmlinux ELF and reports whether it can
// be booted through PVH.
func extractVmlinux(ctx context.Context, bzImage []byte) (vmlinux []byte, pvh bool, err error) {
	payload, err := bzImagePayload(bzImage)
	if err != nil {
		return nil, false, err
	}
	out, err := decompressPayload(ctx, payload)
	if err != nil {
		return nil, false, err
	}
	if !bytes.HasPrefix(out, []byte(magicELF)) {
		return nil, false, errors.New("decompressed kernel payload is not an ELF file")
	}
	pvh, err = hasPVHNote(out)
	if err != nil {
		return nil, false, fmt.Errorf("read vmlinux ELF notes: %w", err)
	}
	return out, pvh, nil
}

// decompressPayload picks the decompressor by the payload's magic bytes. The kernel's build
// appends the uncompressed size (4 bytes) to most formats; each path copes with that tail.
func decompressPayload(ctx context.Context, p []byte) ([]byte, error) {
	switch {
	case bytes.HasPrefix(p, []byte(magicLZ4Legacy)):
		return unlz4Legacy(p)
	case bytes.HasPrefix(p, []byte(magicLZ4Frame)):
		out, err := io.ReadAll(lz4.NewReader(bytes.NewReader(p)))
		if err != nil {
			// The reader takes the appended size for the start of another frame; that is
			// fine only when the size confirms the output is complete.
			if len(out) == 0 || binary.LittleEndian.Uint32(p[len(p)-4:]) != uint32(len(out)) {
				return nil, fmt.Errorf("decompress LZ4 frame payload: %w", err)
			}
		}
		return out, nil
	case bytes.HasPrefix(p, []byte(magicGzip)):
		zr, err := gzip.NewReader(bytes.NewReader(p))
		if err != nil {
			return nil, fmt.Errorf("decompress gzip payload: %w", err)
		}
		zr.Multistream(false)
		out, err := io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("decompress gzip payload: %w", err)
		}
		return out, nil
	case bytes.HasPrefix(p, []byte(magicXZ)):
		return decompressCLI(ctx, "xz", "xz-utils", p, "-dc", "--single-stream")
	case bytes.HasPrefix(p, []byte(magicZstd)):
		return decompressCLI(ctx, "zstd", "zstd", p[:len(p)-4], "-dcq")
	case bytes.HasPrefix(p, []byte(magicBzip2)), bytes.HasPrefix(p, []byte(magicLZMA)), bytes.HasPrefix(p, []byte(magicLZO)):
		return nil, errors.New("kernel payload uses bzip2/lzma/lzo compression, which Wrenn does not extract; use a kernel built with LZ4, gzip, xz or zstd")
	default:
		n := min(len(p), 8)
		return nil, fmt.Errorf("kernel payload has unknown compression (magic % x)", p[:n])
	}
}

// unlz4Legacy decodes the LZ4 "legacy" stream the kernel uses (lz4 -l): the magic, then
// blocks of [4-byte compressed size][data], each at most 8 MiB uncompressed. The stream ends
// at the end of input or with the 4-byte uncompressed size the kernel build appends, which is
// checked when present.
func unlz4Legacy(p []byte) ([]byte, error) {
	const maxBlock = 8 << 20
	legacyMagic := binary.LittleEndian.Uint32([]byte(magicLZ4Legacy))
	var out []byte
	buf := make([]byte, maxBlock)
	rest := p[4:]
	for len(rest) >= 4 {
		size := binary.LittleEndian.Uint32(rest)
		rest = rest[4:]
		if size == legacyMagic { // concatenated streams
			continue
		}
		if len(rest) == 0 { // the appended uncompressed size
			if int(size) != len(out) {
				return nil, fmt.Errorf("LZ4 payload decoded to %d bytes, the kernel image says %d", len(out), size)
			}
			break
		}
		if int64(size) > int64(len(rest)) {
			return nil, fmt.Errorf("LZ4 payload block of %d bytes overruns the %d bytes left", size, len(rest))
		}
		n, err := lz4.UncompressBlock(rest[:size], buf)
		if err != nil {
			return nil, fmt.Errorf("decompress LZ4 payload block at output offset %d: %w", len(out), err)
		}
		out = append(out, buf[:n]...)
		rest = rest[size:]
	}
	if len(out) == 0 {
		return nil, errors.New("LZ4 payload is empty")
	}
	return out, nil
}

// decompressCLI runs an external decompressor for formats the standard library lacks.
func decompressCLI(ctx context.Context, tool, pkg string, in []byte, args ...string) ([]byte, error) {
	path, err := exec.LookPath(tool)
	if err != nil {
		return nil, fmt.Errorf("kernel payload is %s-compressed and %s is not installed (apt-get install %s)", tool, tool, pkg)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("decompress kernel payload with %s: %w: %s", tool, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// hasPVHNote reports whether the ELF carries XEN_ELFNOTE_PHYS32_ENTRY (type 18, owner "Xen"),
// the entry point QEMU uses to boot a vmlinux directly.
func hasPVHNote(vmlinux []byte) (bool, error) {
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return false, err
	}
	defer f.Close()
	const xenElfnotePhys32Entry = 18
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_NOTE {
			continue
		}
		data, err := io.ReadAll(prog.Open())
		if err != nil {
			return false, err
		}
		for len(data) >= 12 {
			namesz := int(f.ByteOrder.Uint32(data[0:]))
			descsz := int(f.ByteOrder.Uint32(data[4:]))
			typ := f.ByteOrder.Uint32(data[8:])
			nameEnd := 12 + align4(namesz)
			next := nameEnd + align4(descsz)
			if namesz < 0 || descsz < 0 || next > len(data) {
				break
			}
			name := string(bytes.TrimRight(data[12:12+namesz], "\x00"))
			if name == "Xen" && typ == xenElfnotePhys32Entry {
				return true, nil
			}
			data = data[next:]
		}
	}
	return false, nil
}

func align4(n int) int { return (n + 3) &^ 3 }
