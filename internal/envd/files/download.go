package files

import (
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// download serves GET /files (spec section 5.5). The order of the checks is the
// protocol: signing, user, path, existence, directory, Accept-Encoding.
func (h *Handler) download(w http.ResponseWriter, r *http.Request) {
	p, herr := parseParams(r)
	if herr == nil {
		herr = h.authorize(r, p, OperationRead)
	}
	if herr != nil {
		h.fail(w, r, herr, "path", p.path)
		return
	}
	u, herr := h.user(r, p)
	if herr != nil {
		h.fail(w, r, herr, "path", p.path)
		return
	}
	abs, err := h.st.ResolvePath(p.path, u)
	if err != nil {
		h.fail(w, r, errorf(http.StatusBadRequest, "error expanding and resolving path '%s': %v", p.path, err), "user", u.Name)
		return
	}
	logAttrs := []any{"path", abs, "user", u.Name}

	st, err := os.Stat(abs)
	if err != nil {
		h.fail(w, r, statError(abs, err), logAttrs...)
		return
	}
	if st.IsDir() {
		h.fail(w, r, errorf(http.StatusBadRequest, "path '%s' is a directory", abs), logAttrs...)
		return
	}
	useGzip, ok := negotiateEncoding(r.Header.Values("Accept-Encoding"))
	if !ok {
		h.fail(w, r, errorf(http.StatusNotAcceptable, "error parsing Accept-Encoding: no acceptable encoding found, supported: [gzip]"), logAttrs...)
		return
	}
	mode := st.Mode()
	if mode&(fs.ModeNamedPipe|fs.ModeSocket) != 0 {
		// Opening a FIFO blocks until a writer appears (E2B hangs here); refuse instead.
		h.fail(w, r, errorf(http.StatusBadRequest, "path '%s' is not a regular file", abs), logAttrs...)
		return
	}

	f, err := os.OpenFile(abs, os.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		h.fail(w, r, statError(abs, err), logAttrs...)
		return
	}
	defer f.Close()

	hdr := w.Header()
	hdr.Set("Vary", "Accept-Encoding")
	hdr.Set("Content-Disposition", contentDisposition(filepath.Base(abs)))

	// Range and conditional requests keep http.ServeContent's semantics (206, 304, 412);
	// Accept-Encoding is advisory, so identity is always a valid answer.
	if isRangeOrConditional(r.Header) {
		useGzip = false
	}
	// Pseudo-filesystem files (procfs, sysfs, …) and devices report sizes that have
	// nothing to do with their content, so they are streamed until EOF instead of
	// being served with a Content-Length.
	streamed := !mode.IsRegular() || onPseudoFS(f)

	switch {
	case useGzip:
		h.sendGzip(w, r, f, abs)
	case streamed:
		h.sendStream(w, r, f, abs)
	default:
		// ServeContent handles Content-Length, Last-Modified, Accept-Ranges, Range (206),
		// conditionals (304/412) and Content-Type from the extension (or sniffing), and
		// its copy ends in http.response.ReadFrom, which uses sendfile(2) for *os.File.
		http.ServeContent(w, r, filepath.Base(abs), st.ModTime(), f)
	}
}

// statError maps a failed stat/open of a download path to the client's answer.
func statError(abs string, err error) *httpError {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		// ENOTDIR: a parent component is a file, so the path cannot exist either.
		return errorf(http.StatusNotFound, "path '%s' does not exist", abs)
	case errorsIsAny(err, syscall.ELOOP, syscall.ENAMETOOLONG):
		return errorf(http.StatusBadRequest, "error checking if path exists '%s': %v", abs, err)
	default:
		return errorf(http.StatusInternalServerError, "error checking if path exists '%s': %v", abs, err)
	}
}

// sendGzip streams f gzip-compressed. There is no Content-Length; if reading fails
// after the headers went out, the client sees a truncated gzip stream, which every
// gzip decoder reports.
func (h *Handler) sendGzip(w http.ResponseWriter, r *http.Request, f *os.File, abs string) {
	buf := h.getBuf()
	defer h.putBuf(buf)

	n, rerr := fill(f, *buf)
	hdr := w.Header()
	hdr.Set("Content-Type", contentType(abs, (*buf)[:n]))
	hdr.Set("Content-Encoding", "gzip")
	hdr.Del("Content-Length")
	w.WriteHeader(http.StatusOK)

	// BestSpeed: the stream is compressed on the fly and the point of the transfer is
	// throughput; the default level costs several times the CPU for a few percent.
	gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed) // error only for an invalid level
	defer gz.Close()
	if n > 0 {
		if _, err := gz.Write((*buf)[:n]); err != nil {
			h.log.Debug("files: gzip download aborted", "path", abs, "err", err)
			return
		}
	}
	if rerr == io.EOF {
		return
	}
	if rerr != nil {
		h.log.Error("files: reading file for download failed", "path", abs, "err", rerr)
		return
	}
	if _, rerr, werr := copyChunks(gz, f, *buf); rerr != nil || werr != nil {
		h.log.Debug("files: gzip download aborted", "path", abs, "read_err", rerr, "write_err", werr)
	}
}

// sendStream copies f to the client until EOF with chunked encoding.
func (h *Handler) sendStream(w http.ResponseWriter, r *http.Request, f *os.File, abs string) {
	buf := h.getBuf()
	defer h.putBuf(buf)

	n, rerr := fill(f, *buf)
	if rerr != nil && rerr != io.EOF && n == 0 {
		h.fail(w, r, errorf(http.StatusInternalServerError, "error reading file '%s': %v", abs, rerr), "path", abs)
		return
	}
	w.Header().Set("Content-Type", contentType(abs, (*buf)[:n]))
	w.WriteHeader(http.StatusOK)
	if n > 0 {
		if _, err := w.Write((*buf)[:n]); err != nil {
			return
		}
	}
	if rerr != nil {
		return
	}
	if _, rerr, werr := copyChunks(w, f, *buf); rerr != nil || werr != nil {
		h.log.Debug("files: streamed download aborted", "path", abs, "read_err", rerr, "write_err", werr)
	}
}

// contentType picks the type from the extension, else sniffs the first bytes, as
// http.ServeContent does for identity responses.
func contentType(name string, head []byte) string {
	if ct := mime.TypeByExtension(filepath.Ext(name)); ct != "" {
		return ct
	}
	if len(head) > 512 {
		head = head[:512]
	}
	return http.DetectContentType(head)
}

// isRangeOrConditional reports whether the request needs ServeContent's identity
// semantics.
func isRangeOrConditional(h http.Header) bool {
	for _, k := range []string{"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"} {
		if h.Get(k) != "" {
			return true
		}
	}
	return false
}

// onPseudoFS reports whether f lives on a kernel pseudo filesystem whose file sizes
// are meaningless (procfs reports 0 and cannot seek to the end, sysfs reports 4096).
func onPseudoFS(f *os.File) bool {
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &sfs); err != nil {
		return false
	}
	switch int64(sfs.Type) {
	case unix.PROC_SUPER_MAGIC, unix.SYSFS_MAGIC, unix.DEBUGFS_MAGIC, unix.TRACEFS_MAGIC,
		unix.SECURITYFS_MAGIC, unix.CGROUP_SUPER_MAGIC, unix.CGROUP2_SUPER_MAGIC,
		configfsMagic, unix.EFIVARFS_MAGIC, unix.BPF_FS_MAGIC:
		return true
	}
	return false
}

// negotiateEncoding chooses the response coding from Accept-Encoding values (RFC 9110
// 12.5.3, E2B's choices where the RFC leaves room): gzip when it is listed with a q
// greater than zero and not below an explicit identity; identity when it is acceptable
// (it is unless "identity;q=0", or "*;q=0" without an identity entry); gzip via "*"
// only when identity is refused. ok is false when neither coding is acceptable.
func negotiateEncoding(values []string) (useGzip, ok bool) {
	gzipQ, identityQ, starQ := -1.0, -1.0, -1.0
	for _, v := range values {
		for elem := range strings.SplitSeq(v, ",") {
			name, q, valid := parseCoding(elem)
			if !valid {
				continue
			}
			switch name {
			case "gzip", "x-gzip":
				gzipQ = max(gzipQ, q)
			case "identity":
				identityQ = max(identityQ, q)
			case "*":
				starQ = max(starQ, q)
			}
		}
	}
	if gzipQ > 0 && (identityQ < 0 || gzipQ >= identityQ) {
		return true, true
	}
	identityOK := identityQ > 0 || (identityQ < 0 && starQ != 0)
	if identityOK {
		return false, true
	}
	if gzipQ > 0 || (gzipQ < 0 && starQ > 0) {
		return true, true
	}
	return false, false
}

// parseCoding parses one Accept-Encoding element, "name" or "name;q=0.5". A missing
// or unparsable q counts as 1, as in E2B.
func parseCoding(elem string) (name string, q float64, ok bool) {
	name, rest, _ := strings.Cut(elem, ";")
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		return "", 0, false
	}
	q = 1
	for param := range strings.SplitSeq(rest, ";") {
		k, v, found := strings.Cut(strings.TrimSpace(param), "=")
		if !found || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			q = min(max(f, 0), 1)
		}
	}
	return name, q, true
}

// contentDisposition returns `inline; filename="<name>"` with quotes and backslashes
// escaped. Names that are not printable ASCII get an ASCII fallback plus an RFC 8187
// filename* parameter carrying the real name, since header values must be ASCII.
func contentDisposition(name string) string {
	printable := true
	for i := 0; i < len(name); i++ {
		if name[i] < 0x20 || name[i] > 0x7e {
			printable = false
			break
		}
	}
	quote := func(s string) string {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
	}
	if printable {
		return "inline; filename=" + quote(name)
	}
	fallback := []byte(name)
	for i, c := range fallback {
		if c < 0x20 || c > 0x7e {
			fallback[i] = '_'
		}
	}
	var enc strings.Builder
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(name); i++ {
		c := name[i]
		if isAttrChar(c) {
			enc.WriteByte(c)
			continue
		}
		enc.WriteByte('%')
		enc.WriteByte(hex[c>>4])
		enc.WriteByte(hex[c&0xf])
	}
	return "inline; filename=" + quote(string(fallback)) + "; filename*=UTF-8''" + enc.String()
}

// isAttrChar reports whether c may appear unencoded in an RFC 8187 value.
func isAttrChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$&+-.^_`|~", c) >= 0
}

// configfsMagic is CONFIGFS_MAGIC from linux/magic.h (missing from x/sys/unix).
const configfsMagic = 0x62656570
