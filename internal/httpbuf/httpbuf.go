// Package httpbuf is a pool of copy buffers for httputil.ReverseProxy, so proxied
// bodies reuse memory instead of allocating a buffer per request.
package httpbuf

import "sync"

// size is one buffer: large enough that bulk transfers take few read/write calls.
const size = 256 << 10

// Pool implements httputil.BufferPool.
type Pool struct{ p sync.Pool }

// New returns an empty pool.
func New() *Pool {
	return &Pool{p: sync.Pool{New: func() any { b := make([]byte, size); return &b }}}
}

// Get returns a buffer.
func (p *Pool) Get() []byte { return *(p.p.Get().(*[]byte)) }

// Put returns a buffer for reuse.
func (p *Pool) Put(b []byte) {
	if cap(b) < size {
		return
	}
	b = b[:size]
	p.p.Put(&b)
}
