package files

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/wrennhq/wrenn/internal/envd/fsx"
	"github.com/wrennhq/wrenn/internal/envd/httpx"
	"github.com/wrennhq/wrenn/internal/envd/state"
)

// metadataHeaderPrefix marks request headers that become file metadata.
const metadataHeaderPrefix = "X-Metadata-"

// entryInfo is one element of the upload response. The field order is E2B's generated
// EntryInfo (alphabetical); metadata is present only when the file has some, because
// the SDK tests deep-compare the array.
type entryInfo struct {
	Metadata map[string]string `json:"metadata,omitempty"`
	Name     string            `json:"name"`
	Path     string            `json:"path"`
	Type     string            `json:"type"`
}

// upload serves POST /files (spec section 5.6). Everything that can be rejected from
// the request line and headers is checked before a byte is written.
func (h *Handler) upload(w http.ResponseWriter, r *http.Request) {
	entries, herr := h.handleUpload(r)
	if herr != nil {
		// Only the path is logged from the query: the signature is a credential.
		h.fail(w, r, herr, "path", r.URL.Query().Get("path"))
		return
	}
	h.log.Debug("files: upload done", "files", len(entries))
	httpx.WriteJSON(w, http.StatusOK, entries)
}

func (h *Handler) handleUpload(r *http.Request) ([]entryInfo, *httpError) {
	p, herr := parseParams(r)
	if herr != nil {
		return nil, herr
	}
	if herr := h.authorize(r, p, OperationWrite); herr != nil {
		return nil, herr
	}
	u, herr := h.user(r, p)
	if herr != nil {
		return nil, herr
	}
	gzipped, herr := requestEncoding(r.Header.Values("Content-Encoding"))
	if herr != nil {
		return nil, herr
	}
	md := metadataFromHeader(r.Header)
	if err := fsx.ValidateMetadata(md); err != nil {
		return nil, errorf(http.StatusBadRequest, "invalid metadata: %v", err)
	}

	contentType := r.Header.Get("Content-Type")
	mediaType, ctParams, _ := mime.ParseMediaType(contentType)
	var boundary string
	switch {
	case mediaType == "application/octet-stream":
		if !p.hasPath {
			return nil, errorf(http.StatusBadRequest, "path query parameter is required for raw body upload")
		}
	case strings.HasPrefix(mediaType, "multipart/"):
		boundary = ctParams["boundary"]
		if boundary == "" {
			return nil, errorf(http.StatusBadRequest, "error parsing multipart form: no multipart boundary param in Content-Type")
		}
	default:
		return nil, errorf(http.StatusBadRequest, "unsupported content type: %s, expected multipart/form-data or application/octet-stream", contentType)
	}

	body := io.Reader(r.Body)
	if gzipped || boundary != "" {
		// The multipart parser and the gzip reader both consume their input in 4 KiB
		// reads; a large buffer in front turns those into few socket reads.
		br := bufio.NewReaderSize(r.Body, copyBufferSize)
		body = br
		if gzipped {
			zr, err := gzip.NewReader(br)
			if err != nil {
				return nil, errorf(http.StatusBadRequest, "error decompressing request body: failed to create gzip reader: %v", err)
			}
			defer zr.Close()
			body = zr
		}
	}

	if boundary == "" {
		abs, err := h.st.ResolvePath(p.path, u)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "error resolving path: %v", err)
		}
		final, herr := h.writeFile(abs, u, body, md, r.ContentLength)
		if herr != nil {
			return nil, herr
		}
		return []entryInfo{h.entry(abs, final)}, nil
	}
	return h.uploadMultipart(r, p, u, multipart.NewReader(body, boundary), md)
}

// uploadMultipart writes every part named "file". A part's target is the `path` query
// parameter when given, else its full filename (directories included).
func (h *Handler) uploadMultipart(r *http.Request, p params, u *state.User, mr *multipart.Reader, md map[string]string) ([]entryInfo, *httpError) {
	entries := []entryInfo{} // an upload without file parts answers [], not null
	for {
		part, err := mr.NextPart()
		// Only a bare io.EOF is the end of the form: NextPart wraps an EOF that comes
		// before the closing boundary (a truncated or empty body) with %w.
		if err == io.EOF { //nolint:errorlint // see above
			return entries, nil
		}
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "error reading form: %v", err)
		}
		entry, herr := h.uploadPart(r, p, u, part, entries, md)
		_ = part.Close()
		if herr != nil {
			return nil, herr
		}
		if entry != nil {
			entries = append(entries, *entry)
		}
	}
}

func (h *Handler) uploadPart(r *http.Request, p params, u *state.User, part *multipart.Part, done []entryInfo, md map[string]string) (*entryInfo, *httpError) {
	if part.FormName() != "file" {
		return nil, nil
	}
	target := p.path
	if !p.hasPath {
		name, err := rawFilename(part)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "error getting multipart custom part file name: %v", err)
		}
		target = name
	}
	abs, err := h.st.ResolvePath(target, u)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "error resolving path: %v", err)
	}
	for _, e := range done {
		if e.Path == abs {
			return nil, duplicateError(abs, done)
		}
	}
	final, herr := h.writeFile(abs, u, part, md, r.ContentLength)
	if herr != nil {
		return nil, herr
	}
	entry := h.entry(abs, final)
	return &entry, nil
}

// duplicateError is E2B's message for two parts aimed at one file.
func duplicateError(abs string, done []entryInfo) *httpError {
	msg := fmt.Sprintf("you cannot upload multiple files to the same path '%s' in one upload request, only the first specified file was uploaded", abs)
	var others []string
	for _, e := range done {
		if e.Path != abs {
			others = append(others, e.Path)
		}
	}
	if len(others) > 0 {
		msg += ", also the following files were uploaded: " + strings.Join(others, ", ")
	}
	return &httpError{status: http.StatusBadRequest, msg: msg}
}

// rawFilename returns the part's filename parameter as sent. multipart.Part.FileName
// strips directories, but the SDKs send the target path there ("dir/sub/a.txt").
func rawFilename(part *multipart.Part) (string, error) {
	_, dp, err := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
	if err != nil {
		return "", err
	}
	name, ok := dp["filename"]
	if !ok {
		return "", errors.New("filename not found in Content-Disposition header")
	}
	return name, nil
}

// entry builds the response element for a written file. The metadata is read back
// from disk so the response never claims metadata that was not stored.
func (h *Handler) entry(abs, final string) entryInfo {
	e := entryInfo{Name: filepath.Base(abs), Path: abs, Type: "file"}
	md, err := fsx.ReadMetadata(final)
	if err != nil {
		h.log.Warn("files: reading back metadata failed", "path", final, "err", err)
	}
	if len(md) > 0 {
		e.Metadata = md
	}
	return e
}

// requestEncoding parses Content-Encoding: absent or identity means a plain body, gzip
// (or its alias x-gzip) a compressed one; anything else is refused.
func requestEncoding(values []string) (gzipped bool, herr *httpError) {
	var codings []string
	for _, v := range values {
		for elem := range strings.SplitSeq(v, ",") {
			name, _, _ := strings.Cut(elem, ";")
			name = strings.ToLower(strings.TrimSpace(name))
			if name != "" && name != "identity" {
				codings = append(codings, name)
			}
		}
	}
	switch {
	case len(codings) == 0:
		return false, nil
	case len(codings) == 1 && (codings[0] == "gzip" || codings[0] == "x-gzip"):
		return true, nil
	default:
		return false, errorf(http.StatusBadRequest, "error decompressing request body: unsupported Content-Encoding: %s, supported: [gzip]", strings.Join(values, ", "))
	}
}

// metadataFromHeader collects X-Metadata-<key> headers, keys lower-cased, first value
// of a repeated header. An empty key ("X-Metadata-: v") is ignored, as in E2B. nil
// means no metadata, which clears the file's metadata.
func metadataFromHeader(hdr http.Header) map[string]string {
	var md map[string]string
	for name, values := range hdr {
		if len(values) == 0 || len(name) < len(metadataHeaderPrefix) ||
			!strings.EqualFold(name[:len(metadataHeaderPrefix)], metadataHeaderPrefix) {
			continue
		}
		key := strings.ToLower(name[len(metadataHeaderPrefix):])
		if key == "" {
			continue
		}
		if md == nil {
			md = map[string]string{}
		}
		md[key] = values[0]
	}
	return md
}
