// Package openapitest validates real HTTP traffic against api/openapi.yaml in tests: wrap
// a client's transport with Transport and every request and response that passes
// through is checked against the REST contract, so handlers and document cannot drift
// apart unnoticed.
package openapitest

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/helpers"
	"github.com/wrennhq/wrenn/api"
)

// A contract is one OpenAPI document's validators, built once per process. Whether
// they are safe for concurrent use is not documented, so every validation holds mu.
type contract struct {
	name   string
	doc    func() ([]byte, error)
	once   sync.Once
	full   validator.Validator // request and response bodies too
	noBody validator.Validator // path, parameters, security, status and headers only
	err    error
}

var (
	mu        sync.Mutex
	wrennAPI  = &contract{name: "api/openapi.yaml", doc: func() ([]byte, error) { return api.OpenAPI(), nil }}
	contracts = map[string]*contract{}
)

func (c *contract) load() error {
	c.once.Do(func() {
		raw, err := c.doc()
		if err != nil {
			c.err = fmt.Errorf("read %s: %w", c.name, err)
			return
		}
		build := func(opts ...config.Option) validator.Validator {
			if c.err != nil {
				return nil
			}
			doc, err := libopenapi.NewDocument(raw)
			if err != nil {
				c.err = fmt.Errorf("parse %s: %w", c.name, err)
				return nil
			}
			v, errs := validator.NewValidator(doc, opts...)
			if len(errs) > 0 {
				c.err = fmt.Errorf("build a validator of %s: %v", c.name, errs)
				return nil
			}
			return v
		}
		c.full = build(config.WithFormatAssertions())
		c.noBody = build(config.WithFormatAssertions(), config.WithoutRequestBodyValidation(), config.WithoutResponseBodyValidation())
	})
	return c.err
}

// Transport returns a RoundTripper that sends each request through next (nil means
// http.DefaultTransport) and reports with t.Errorf every way the exchange departs from
// api/openapi.yaml: an undocumented path or method, an undocumented status code, a
// response body or header that does not match its schema, and a request the document
// calls invalid that the server nevertheless accepted.
//
// Request problems are not reported when the server answered 4xx: a test that sends a
// malformed body or no credentials on purpose expects exactly that refusal. Bodies of
// application/octet-stream and multipart requests and responses are passed through
// untouched (they may be large or streamed), as are 101 upgrades; their status codes
// are still checked. Other bodies are buffered for validation and handed on intact.
func Transport(t testing.TB, next http.RoundTripper) http.RoundTripper {
	return newTransport(t, wrennAPI, next)
}

// Alias validates requests to a served path as requests to a documented one: a
// server may answer an operation at a path its document does not have yet (E2B's
// SDKs call /v2 paths newer than E2B's document).
type Alias struct {
	Served     string   // a regular expression of the served path
	Documented string   // its replacement (regexp.ReplaceAllString)
	Methods    []string // the methods it applies to; none: all
}

// Options adapt TransportFor to a document that trails its server.
type Options struct {
	Aliases []Alias
	// UndocumentedErrors accepts error statuses (4xx, 5xx) the document does not list
	// for an operation: a document that lists only some of the errors its server
	// really answers (E2B's) still checks everything else.
	UndocumentedErrors bool
}

// TransportFor is Transport for another document, the file at path (E2B's, for the
// E2B-compatible routes), read and built once per process.
func TransportFor(t testing.TB, path string, next http.RoundTripper, opts Options) http.RoundTripper {
	mu.Lock()
	c, ok := contracts[path]
	if !ok {
		c = &contract{name: path, doc: func() ([]byte, error) { return os.ReadFile(path) }}
		contracts[path] = c
	}
	mu.Unlock()
	tr := newTransport(t, c, next)
	tr.undocumentedErrors = opts.UndocumentedErrors
	for _, a := range opts.Aliases {
		tr.aliases = append(tr.aliases, alias{re: regexp.MustCompile(a.Served), to: a.Documented, methods: a.Methods})
	}
	return tr
}

type alias struct {
	re      *regexp.Regexp
	to      string
	methods []string
}

func newTransport(t testing.TB, c *contract, next http.RoundTripper) *transport {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{t: t, next: next, c: c}
}

type transport struct {
	t                  testing.TB
	next               http.RoundTripper
	c                  *contract
	aliases            []alias
	undocumentedErrors bool // Options.UndocumentedErrors
}

// documented is req as its document knows it (aliases applied), for validation.
func (tr *transport) documented(req *http.Request) *http.Request {
	for _, a := range tr.aliases {
		if (len(a.methods) == 0 || slices.Contains(a.methods, req.Method)) && a.re.MatchString(req.URL.Path) {
			r := req.Clone(req.Context())
			r.URL.Path, r.URL.RawPath = a.re.ReplaceAllString(req.URL.Path, a.to), ""
			return r
		}
	}
	return req
}

// streamed reports whether a body of this content type is passed through unread.
func streamed(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(contentType))
	}
	return mt == "application/octet-stream" || strings.HasPrefix(mt, "multipart/")
}

func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := tr.c.load(); err != nil {
		tr.t.Errorf("openapitest: %v", err)
		return tr.next.RoundTrip(req)
	}

	// Buffer a request body that will be validated, and send a copy carrying it: a
	// RoundTripper must not change the caller's request.
	checkReqBody := !streamed(req.Header.Get("Content-Type"))
	var reqBody []byte
	out := req
	if checkReqBody && req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("openapitest: read request body: %w", err)
		}
		reqBody = b
		out = req.Clone(req.Context())
		out.Body = io.NopCloser(bytes.NewReader(b))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}

	resp, err := tr.next.RoundTrip(out)
	if err != nil {
		return resp, err
	}
	if out != req {
		resp.Request = req
	}

	checkRespBody := resp.StatusCode != http.StatusSwitchingProtocols && !streamed(resp.Header.Get("Content-Type"))
	var respBody []byte
	if checkRespBody && resp.Body != nil && resp.Body != http.NoBody {
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("openapitest: read response body of %s %s: %w", req.Method, req.URL.Path, err)
		}
		respBody = b
		resp.Body = io.NopCloser(bytes.NewReader(b))
	}

	problems := tr.c.check(tr.documented(req), reqBody, checkReqBody, resp, respBody, checkRespBody)
	if tr.undocumentedErrors && resp.StatusCode >= 400 {
		problems = slices.DeleteFunc(problems, func(p string) bool {
			return strings.Contains(p, "response code '") && strings.Contains(p, "does not exist")
		})
	}
	if len(problems) > 0 {
		tr.t.Helper()
		tr.t.Errorf("openapitest: %s %s → %d does not match %s:\n%s",
			req.Method, req.URL.RequestURI(), resp.StatusCode, tr.c.name, strings.Join(problems, "\n"))
	}
	return resp, nil
}

// check validates one exchange on copies of its request and response and returns the
// problems found, each as a line for a person.
func (c *contract) check(req *http.Request, reqBody []byte, checkReqBody bool, resp *http.Response, respBody []byte, checkRespBody bool) []string {
	vreq := func(body []byte) *http.Request {
		r := req.Clone(req.Context())
		r.Body, r.GetBody = http.NoBody, nil
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		return r
	}
	vresp := *resp
	vresp.Body = http.NoBody
	if respBody != nil {
		vresp.Body = io.NopCloser(bytes.NewReader(respBody))
	}

	reqV, respV := c.noBody, c.noBody
	if checkReqBody {
		reqV = c.full
	}
	if checkRespBody {
		respV = c.full
	}

	mu.Lock()
	_, reqErrs := reqV.ValidateHttpRequestSync(vreq(reqBody))
	_, respErrs := respV.ValidateHttpResponse(vreq(nil), &vresp)
	mu.Unlock()

	refused := resp.StatusCode >= 400 && resp.StatusCode < 500
	var problems []string
	seen := map[string]bool{}
	add := func(side string, e *verrors.ValidationError) {
		line := describe(side, e)
		if !seen[line] {
			seen[line] = true
			problems = append(problems, line)
		}
	}
	for _, e := range reqErrs {
		// A request the server refused may well be invalid on purpose; what must always
		// hold is that the path and method are documented.
		if refused && !routeMissing(e) {
			continue
		}
		add("request", e)
	}
	for _, e := range respErrs {
		add("response", e)
	}
	return problems
}

func routeMissing(e *verrors.ValidationError) bool {
	return e.IsPathMissingError() || e.IsOperationMissingError() ||
		e.ValidationSubType == helpers.ValidationMissingOperation
}

// describe renders one validation error with the schema failures under it.
func describe(side string, e *verrors.ValidationError) string {
	if routeMissing(e) {
		side = "route"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  - %s: %s", side, e.Message)
	if e.Reason != "" && e.Reason != e.Message {
		fmt.Fprintf(&b, " (%s)", e.Reason)
	}
	for _, s := range e.SchemaValidationErrors {
		fmt.Fprintf(&b, "\n      · %s", s.Reason)
		if s.FieldPath != "" {
			fmt.Fprintf(&b, " at %s", s.FieldPath)
		}
	}
	return b.String()
}
