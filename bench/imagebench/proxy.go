package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
)

// cutProxy is a TCP proxy in front of the registry that closes, once, the
// connection that carries a GET of one blob, after cutAt bytes of that
// response's body went through: the cut a flaky link makes in the middle
// of a layer. It counts every byte it forwards to its clients, and the
// bytes of each response to a request for the blob (headers included).
//
// It parses what it forwards only to know which request a response
// answers: the request's head is read whole before it is passed on (so
// the response cannot overtake the bookkeeping), and the response's head
// is scanned for its end; bytes go through unchanged and in order. A Go
// HTTP client does not pipeline, so a connection has one request in
// flight.
type cutProxy struct {
	ln       net.Listener
	upstream string
	blobPath string // /v2/REPO/blobs/sha256:HEX
	cutAt    int64

	toClient atomic.Int64
	cut      atomic.Bool

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	reqs  []*blobRequest // the requests for blobPath, in order
	wg    sync.WaitGroup
}

// blobRequest is one request for the blob and what its response brought.
type blobRequest struct {
	method, rangeHdr string
	status           string // the response's status line, less "HTTP/1.1 "
	bytes            int64  // forwarded to the client, headers included
	body             int64  // of which after the head
	cut              bool   // the proxy cut the connection in its body
}

func (r *blobRequest) String() string {
	s := r.method
	if r.rangeHdr != "" {
		s += " Range: " + r.rangeHdr
	}
	if r.status != "" {
		s += " -> " + r.status
	}
	s += fmt.Sprintf(", %.2f MB of body", mb(r.body))
	if r.cut {
		s += " (cut here)"
	}
	return s
}

func startCutProxy(upstream, blobPath string, cutAt int64) (*cutProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &cutProxy{ln: ln, upstream: upstream, blobPath: blobPath, cutAt: cutAt, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				fmt.Fprintln(os.Stderr, "imagebench: proxy:", err)
			}
			return
		}
		server, err := net.Dial("tcp", p.upstream)
		if err != nil {
			fmt.Fprintln(os.Stderr, "imagebench: proxy:", err)
			client.Close()
			continue
		}
		if !p.track(client, server) {
			return
		}
		c := &proxyConn{p: p, client: client, server: server}
		p.wg.Add(2)
		go c.toServer()
		go c.toClient()
	}
}

// track records the pair for stop, or closes it when the proxy is stopped.
func (p *cutProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *cutProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.conns, c)
	}
}

// stop closes the listener and every connection, and waits for the
// goroutines.
func (p *cutProxy) stop() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// blobRequests is a copy of what the proxy saw of the blob.
func (p *cutProxy) blobRequests() []blobRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]blobRequest, len(p.reqs))
	for i, r := range p.reqs {
		out[i] = *r
	}
	return out
}

// proxyConn is one client connection and its upstream one. cur is the
// request in flight when it is one for the blob (nil otherwise); seq
// counts requests, so that the response side knows a new one began.
type proxyConn struct {
	p              *cutProxy
	client, server net.Conn

	mu  sync.Mutex // guards seq, cur (and cur's fields, with p.mu)
	seq int
	cur *blobRequest
}

// toServer forwards the client's bytes, reading each request's head whole
// first. What does not parse as HTTP is forwarded as it is.
func (c *proxyConn) toServer() {
	defer c.p.wg.Done()
	defer c.p.untrack(c.client, c.server)
	var rec bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c.client, &rec))
	for {
		req, err := http.ReadRequest(br)
		if err == nil {
			_, err = io.Copy(io.Discard, req.Body)
		}
		if err != nil {
			// Everything read so far is in rec (br's read-ahead too).
			if _, werr := c.server.Write(rec.Bytes()); werr == nil && rec.Len() > 0 {
				io.Copy(c.server, c.client)
			}
			return
		}
		var r *blobRequest
		if req.URL.Path == c.p.blobPath {
			r = &blobRequest{method: req.Method, rangeHdr: req.Header.Get("Range")}
			c.p.mu.Lock()
			c.p.reqs = append(c.p.reqs, r)
			c.p.mu.Unlock()
		}
		c.mu.Lock()
		c.seq++
		c.cur = r
		c.mu.Unlock()
		if _, err := c.server.Write(rec.Bytes()); err != nil {
			return
		}
		rec.Reset()
	}
}

// toClient forwards the registry's bytes, counting them, and makes the
// cut.
func (c *proxyConn) toClient() {
	defer c.p.wg.Done()
	defer c.p.untrack(c.client, c.server)
	buf := make([]byte, 64<<10)
	seq := 0
	var head []byte // the response's head so far, until its end is seen
	inBody := false
	for {
		n, err := c.server.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			c.mu.Lock()
			if c.seq != seq {
				seq, head, inBody = c.seq, nil, false
			}
			r := c.cur
			c.mu.Unlock()
			if r != nil {
				body := 0 // bytes of chunk after the head
				if inBody {
					body = n
				} else {
					head = append(head, chunk...)
					if i := bytes.Index(head, []byte("\r\n\r\n")); i >= 0 {
						inBody = true
						body = len(head) - (i + 4)
						line, _, _ := strings.Cut(string(head[:i]), "\r\n")
						_, status, _ := strings.Cut(line, " ")
						c.p.mu.Lock()
						r.status = status
						c.p.mu.Unlock()
						head = nil
					}
				}
				cut := false
				c.p.mu.Lock()
				if r.method == http.MethodGet && body > 0 && r.body+int64(body) >= c.p.cutAt && c.p.cut.CompareAndSwap(false, true) {
					headBytes := n - body
					body = int(c.p.cutAt - r.body)
					chunk = chunk[:headBytes+body]
					r.cut, cut = true, true
				}
				r.body += int64(body)
				r.bytes += int64(len(chunk))
				c.p.mu.Unlock()
				if cut {
					c.client.Write(chunk)
					c.p.toClient.Add(int64(len(chunk)))
					return
				}
			}
			if _, werr := c.client.Write(chunk); werr != nil {
				return
			}
			c.p.toClient.Add(int64(n))
		}
		if err != nil {
			return
		}
	}
}
