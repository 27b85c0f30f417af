package daemon

import (
	"bytes"
	"container/heap"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/desired"
)

// Every http and tcp probe of the daemon runs on one OS thread of its own,
// an event loop (netProber.loop): epoll over the probes' sockets and an
// eventfd, and one heap of the runs' next times (a probe's due time, or
// its deadline while it is in flight). A probe wakes that thread and no
// goroutine or timer of the Go runtime; the thread sleeps without holding
// a P (epollwait.go), and the runs of many containers share its wakes
// (onGrid): what is left of a probe's cost is its syscalls and its TCP
// handshake. Issue 17's goal is 0.2 ms of the daemon's CPU per probe;
// bench/probe.sh measures it: 100 containers probed every 10 s on a
// 2-core VM cost 0.13 ms per http probe and 0.08 ms per tcp probe, where
// a goroutine per container blocked on the runtime's poller cost 0.38
// and 0.31 ms.
//
// The thread joins a container's network namespace to make a probe's
// socket (a socket stays in the namespace it was made in) and stays there
// until the next probe of another container needs another namespace: one
// setns per probe, not two. It goes back to the daemon's namespace when
// the run whose namespace it is in is dropped, so that it never keeps a
// removed container's namespace alive. Nothing but the loop runs on it:
// it is locked to the loop's goroutine for its whole life and ends with
// it, and the results go to the health manager through netRun.done,
// which must not make sockets (an abstract unix socket is in the
// namespace too) and must not block.

// Bounds of what a probe reads and writes.
const (
	// maxHTTPHeader is how much of an http response is read looking for
	// the end of its header; the status line decides past it.
	maxHTTPHeader = 16 << 10
)

// netProber runs http and tcp probes: see above.
type netProber struct {
	epfd int
	evfd int // eventfd: adds, removes and close wake the loop

	mu      sync.Mutex
	adds    []*netRun
	removes []*netRun
	closing bool
	started bool
	done    chan struct{} // closed when the loop has ended

	// Used by the loop only.
	runs    netHeap
	byFd    map[int32]*netRun
	seq     int32
	events  []unix.EpollEvent // epoll_wait's, on the heap (epollwait.go)
	base    time.Time         // the grid's origin (onGrid)
	home    *os.File          // the daemon's network namespace
	cur     *os.File          // the namespace the thread is in; nil: home
	tidSeen chan int          // tests: the loop's thread, once it runs
}

// netRun is one run of a container probed by http or tcp, in the loop.
type netRun struct {
	p *prober
	// load returns the probe to run now: nil when the run is no longer
	// probed (it is dropped), a probe of another kind when it is now
	// probed by exec (it is dropped and handedBack is closed).
	load func() *desired.Health
	// done takes a probe's result, on the loop's thread (see above).
	done func(h *desired.Health, ok bool, result string)
	// once drops the run after its first result (tests).
	once       bool
	reported   bool // once: its result was given
	handedBack chan struct{}

	// Used by the loop only.
	index   int // in netProber.runs; -1 when not there
	next    time.Time
	sched   time.Time // the probe's due time off the grid (onGrid)
	dropped bool
	ns      *os.File // the container's network namespace, opened at the first probe
	h       *desired.Health
	fd      int // the probe's socket; -1 when none is in flight
	v6      bool
	stage   netStage
	watched bool   // fd is in the epoll set
	seq     int32  // the socket's number in its epoll events (an event of a closed socket whose fd was reused is not its)
	sent    int    // http: how much of req is written
	req     []byte // http: the request
	buf     []byte // http: the response so far
	started time.Time
}

// netStage is where a probe in flight is.
type netStage int

const (
	stageConnecting netStage = iota
	stageSending             // http: the request
	stageReading             // http: the response
)

// newNetProber makes the prober; its thread starts at the first run.
func newNetProber() (*netProber, error) {
	home, err := daemonNetns()
	if err != nil {
		return nil, fmt.Errorf("the daemon's own network namespace: %w", err)
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return &netProber{base: time.Now(), epfd: epfd, evfd: evfd, done: make(chan struct{}), byFd: map[int32]*netRun{}, home: home, tidSeen: make(chan int, 1)}, nil
}

// Close ends the loop, closing what it holds, and waits for it.
func (e *netProber) Close() {
	e.mu.Lock()
	started := e.started
	e.closing, e.started = true, true // no loop starts after this
	e.mu.Unlock()
	if started {
		e.wake()
		<-e.done
	}
	unix.Close(e.epfd)
	unix.Close(e.evfd)
}

// add hands r to the loop: it is probed at once, then every interval.
// It reports false when the prober is closed.
func (e *netProber) add(r *netRun) bool {
	r.index, r.fd = -1, -1
	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		return false
	}
	e.adds = append(e.adds, r)
	if !e.started {
		e.started = true
		go e.loop(nil)
	}
	e.mu.Unlock()
	e.wake()
	return true
}

// remove drops r from the loop (its probe in flight is abandoned); it
// does not wait.
func (e *netProber) remove(r *netRun) {
	e.mu.Lock()
	if !e.closing {
		e.removes = append(e.removes, r)
	}
	e.mu.Unlock()
	e.wake()
}

func (e *netProber) wake() {
	one := [8]byte{1}
	unix.Write(e.evfd, one[:]) // EAGAIN: already awake, the counter is full
}

// run probes r by the loop until stop is closed (then it removes the run
// and returns false) or the run's probe is no longer an http or tcp one
// (then it returns true: the caller probes it).
func (e *netProber) run(stop <-chan struct{}, r *netRun) bool {
	r.handedBack = make(chan struct{})
	if !e.add(r) {
		<-stop
		return false
	}
	select {
	case <-stop:
		e.remove(r)
		return false
	case <-r.handedBack:
		return true
	}
}

// probeOnce runs one probe h of p and returns its result (tests and
// benchmarks; the health manager's runs are added with run).
func (e *netProber) probeOnce(p *prober, h *desired.Health) (bool, string) {
	type result struct {
		ok  bool
		res string
	}
	c := make(chan result, 1)
	r := &netRun{p: p, once: true, load: func() *desired.Health { return h },
		done: func(_ *desired.Health, ok bool, res string) { c <- result{ok, res} }}
	if !e.add(r) {
		return false, "failed: the prober is closed"
	}
	got := <-c
	return got.ok, got.res
}

// loop is the prober's thread; it closes started once it has locked its
// thread.
func (e *netProber) loop(started chan struct{}) {
	// Never unlocked: the thread may be in a container's network
	// namespace, and ends with this goroutine.
	runtime.LockOSThread()
	if started != nil {
		close(started)
	}
	if unix.Gettid() == unix.Getpid() {
		// The process's main thread: /proc/self shows its namespaces,
		// and the runtime keeps it when its goroutine ends. The loop
		// runs on another thread, started while this one is held.
		started := make(chan struct{})
		go e.loop(started)
		<-started
		runtime.UnlockOSThread()
		return
	}
	defer close(e.done)
	e.tidSeen <- unix.Gettid()
	e.events = make([]unix.EpollEvent, 64)
	events := e.events
	for {
		timeout := -1
		if len(e.runs) > 0 {
			// Milliseconds, rounded up: never awake before the time.
			d := time.Until(e.runs[0].next)
			timeout = max(0, int((d+time.Millisecond-1)/time.Millisecond))
		}
		n, err := epollWaitBlocking(e.epfd, events, timeout)
		if err != nil && err != unix.EINTR {
			// Cannot happen with valid arguments; stop rather than spin.
			e.shutdown()
			return
		}
		now := time.Now()
		for _, ev := range events[:max(n, 0)] {
			if ev.Fd == int32(e.evfd) {
				var b [8]byte
				unix.Read(e.evfd, b[:])
				if !e.takeRequests(now) {
					e.shutdown()
					return
				}
				continue
			}
			if r := e.byFd[ev.Fd]; r != nil && r.seq == ev.Pad {
				e.step(r, now)
			}
		}
		// Due probes and deadlines.
		for len(e.runs) > 0 && !e.runs[0].next.After(now) {
			r := heap.Pop(&e.runs).(*netRun)
			if r.fd >= 0 {
				e.finish(r, now, false, "failed: timed out")
				continue
			}
			e.start(r, now)
		}
	}
}

// takeRequests applies adds and removes; false when the prober closes.
func (e *netProber) takeRequests(now time.Time) bool {
	e.mu.Lock()
	adds, removes, closing := e.adds, e.removes, e.closing
	e.adds, e.removes = nil, nil
	e.mu.Unlock()
	for _, r := range adds {
		if !r.dropped {
			r.sched, r.next = now, now // the first probe at once
			heap.Push(&e.runs, r)
		}
	}
	for _, r := range removes {
		e.drop(r)
	}
	return !closing
}

// shutdown drops every run, when the loop ends.
func (e *netProber) shutdown() {
	for len(e.runs) > 0 {
		e.drop(e.runs[0])
	}
	for _, r := range e.byFd {
		e.drop(r)
	}
	e.mu.Lock()
	adds := e.adds
	e.adds, e.removes = nil, nil
	e.mu.Unlock()
	for _, r := range adds {
		e.drop(r)
	}
	e.goHome()
}

// drop ends r's probing here: its socket and namespace are closed, and
// the thread leaves that namespace.
func (e *netProber) drop(r *netRun) {
	if r.dropped {
		return
	}
	r.dropped = true
	if r.once && !r.reported {
		r.reported = true
		r.done(r.h, false, "failed: the prober is closed")
	}
	if r.index >= 0 {
		heap.Remove(&e.runs, r.index)
	}
	e.closeSocket(r)
	if r.ns != nil {
		if e.cur == r.ns {
			e.goHome()
		}
		r.ns.Close()
		r.ns = nil
	}
}

// goHome puts the thread back into the daemon's network namespace.
func (e *netProber) goHome() {
	if e.cur == nil {
		return
	}
	if err := unix.Setns(int(e.home.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays where it is (it ends with the loop); the
		// next probe's setns moves it anyway.
		return
	}
	e.cur = nil
}

func (e *netProber) closeSocket(r *netRun) {
	if r.fd >= 0 {
		delete(e.byFd, int32(r.fd))
		unix.Close(r.fd) // leaves the epoll set with it
		r.fd, r.watched = -1, false
	}
}

// start begins a probe of r: the probe to run is loaded now, so a
// changed probe applies at the next probe.
func (e *netProber) start(r *netRun, now time.Time) {
	h := r.load()
	if h == nil {
		e.drop(r)
		return
	}
	if h.HTTP == nil && h.TCP == nil {
		e.drop(r)
		close(r.handedBack)
		return
	}
	r.h, r.started, r.v6 = h, now, false
	if r.ns == nil {
		ns, err := openNetns(r.p.pid, r.p.start)
		if err != nil {
			e.finish(r, now, false, "failed: "+err.Error())
			return
		}
		r.ns = ns
	}
	e.connect(r, now)
}

// connect makes the probe's socket in the container's namespace and
// connects it to the loopback: 127.0.0.1, and ::1 when that is refused (a
// service that listens on ::1 only; docker's and Kubernetes' probes both
// reach it by address). Over the loopback the handshake is over by the
// time connect returns, bar a full accept queue.
func (e *netProber) connect(r *netRun, now time.Time) {
	if e.cur != r.ns {
		if err := unix.Setns(int(r.ns.Fd()), unix.CLONE_NEWNET); err != nil {
			e.finish(r, now, false, "failed: "+os.NewSyscallError("setns", err).Error())
			return
		}
		e.cur = r.ns
	}
	port := r.port()
	family := unix.AF_INET
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	if r.v6 {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: port, Addr: [16]byte{15: 1}}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		e.connectFailed(r, now, err)
		return
	}
	e.seq++
	r.fd, r.stage, r.seq = fd, stageConnecting, e.seq
	e.byFd[int32(fd)] = r
	// Closed with a reset: no TIME_WAIT socket is left in the
	// container's namespace per probe. Kubernetes' probes linger 1 s for
	// that (kubernetes#115143); here a lingering close would block the
	// loop.
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	switch err := unix.Connect(fd, sa); err {
	case nil:
		e.connected(r, now)
	case unix.EINPROGRESS:
		// Usually over already: the loopback's SYN-ACK was taken as
		// connect returned.
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		if n, _ := unix.Poll(pfd, 0); n > 0 {
			e.connectDone(r, now)
			return
		}
		e.wait(r, now, unix.EPOLLOUT)
	default:
		e.connectFailed(r, now, err)
	}
}

// wait has the loop wait for events on r's socket, until the probe's
// deadline.
func (e *netProber) wait(r *netRun, now time.Time, events uint32) {
	ev := unix.EpollEvent{Events: events, Fd: int32(r.fd), Pad: r.seq}
	op := unix.EPOLL_CTL_MOD
	if !r.watched {
		op = unix.EPOLL_CTL_ADD
	}
	if err := unix.EpollCtl(e.epfd, op, r.fd, &ev); err != nil {
		e.finish(r, now, false, "failed: "+os.NewSyscallError("epoll_ctl", err).Error())
		return
	}
	r.watched = true
	if r.index < 0 {
		r.next = r.started.Add(r.h.Timeout)
		heap.Push(&e.runs, r)
	}
}

// connectDone takes a connect's outcome once the socket is writable or
// failed.
func (e *netProber) connectDone(r *netRun, now time.Time) {
	soerr, err := unix.GetsockoptInt(r.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	switch {
	case err != nil:
		e.finish(r, now, false, "failed: "+os.NewSyscallError("getsockopt", err).Error())
	case soerr != 0:
		e.connectFailed(r, now, unix.Errno(soerr))
	default:
		e.connected(r, now)
	}
}

// connectFailed tries ::1 after 127.0.0.1 was refused; the error said
// is 127.0.0.1's unless ::1 was reached and refused too.
func (e *netProber) connectFailed(r *netRun, now time.Time, err error) {
	e.closeSocket(r)
	switch {
	case !r.v6 && err == unix.ECONNREFUSED:
		r.v6 = true
		e.connect(r, now)
		return
	case r.v6:
		err = unix.ECONNREFUSED // no IPv6 here (disabled): 127.0.0.1's refusal
	}
	e.finish(r, now, false, "failed: "+err.Error())
}

// connected goes on with a connected socket: a tcp probe has passed; an
// http probe sends its request.
func (e *netProber) connected(r *netRun, now time.Time) {
	if r.h.HTTP == nil {
		e.finish(r, now, true, "connected")
		return
	}
	// The Host is the address connected to, as Kubernetes' httpGet
	// sends the pod's IP.
	host := "127.0.0.1:"
	if r.v6 {
		host = "[::1]:"
	}
	r.req = append(r.req[:0], "GET "...)
	r.req = append(r.req, r.h.HTTP.Path...)
	r.req = append(r.req, " HTTP/1.1\r\nHost: "...)
	r.req = append(r.req, host...)
	r.req = strconv.AppendInt(r.req, int64(r.h.HTTP.Port), 10)
	r.req = append(r.req, "\r\nUser-Agent: reconciled-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"...)
	r.sent, r.buf, r.stage = 0, r.buf[:0], stageSending
	e.send(r, now)
}

// send writes what is left of r's request, then waits for the response.
func (e *netProber) send(r *netRun, now time.Time) {
	for r.sent < len(r.req) {
		n, err := unix.Write(r.fd, r.req[r.sent:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			e.wait(r, now, unix.EPOLLOUT)
			return
		case err != nil:
			e.finish(r, now, false, "failed: "+err.Error())
			return
		}
		r.sent += n
	}
	r.stage = stageReading
	e.wait(r, now, unix.EPOLLIN|unix.EPOLLRDHUP)
}

// receive reads what came of r's response and decides once its status
// line and header are in.
func (e *netProber) receive(r *netRun, now time.Time) {
	if r.buf == nil {
		r.buf = make([]byte, 0, 4096)
	}
	for {
		if len(r.buf) == cap(r.buf) {
			if cap(r.buf) >= maxHTTPHeader {
				break
			}
			r.buf = append(r.buf, make([]byte, cap(r.buf))...)[:len(r.buf)]
		}
		n, err := unix.Read(r.fd, r.buf[len(r.buf):cap(r.buf)])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if done, ok, res := httpStatus(r.buf, false); done {
				e.finish(r, now, ok, res)
			}
			return // wait for more
		case err != nil && len(r.buf) == 0:
			e.finish(r, now, false, "failed: "+err.Error())
			return
		case err != nil || n == 0:
			_, ok, res := httpStatus(r.buf, true)
			e.finish(r, now, ok, res)
			return
		}
		r.buf = r.buf[:len(r.buf)+n]
	}
	_, ok, res := httpStatus(r.buf, true)
	e.finish(r, now, ok, res)
}

// step goes on with r's probe when its socket is ready.
func (e *netProber) step(r *netRun, now time.Time) {
	switch r.stage {
	case stageConnecting:
		e.connectDone(r, now)
	case stageSending:
		e.send(r, now)
	case stageReading:
		e.receive(r, now)
	}
}

// port is the port r's probe connects to.
func (r *netRun) port() int {
	if r.h.HTTP != nil {
		return r.h.HTTP.Port
	}
	return r.h.TCP.Port
}

// finish ends r's probe with its result: r is probed again after its
// interval (or dropped, once).
func (e *netProber) finish(r *netRun, now time.Time, ok bool, result string) {
	e.closeSocket(r)
	if r.index >= 0 {
		heap.Remove(&e.runs, r.index)
	}
	r.reported = true
	if r.once {
		e.drop(r) // first: the thread is home when the result is told
		r.done(r.h, ok, result)
		return
	}
	r.done(r.h, ok, result)
	iv := r.h.Interval
	r.sched = r.sched.Add(iv)
	if !r.sched.After(now) {
		r.sched = now.Add(iv) // it took longer than the interval
	}
	r.next = e.onGrid(r.sched, iv)
	heap.Push(&e.runs, r)
}

// onGrid is when a probe due at t with interval iv runs: the next tick of
// a grid of iv/10, at most gridMax, that all runs share. The runs of
// many containers probed at the same interval then share the loop's
// wakes (the wake, not the probe, is most of what a probe costs when the
// daemon is otherwise idle). Probes are late by less than a tenth of
// their interval, and their times do not drift: a run is probed every
// interval on average (sched, its time off the grid, goes up by iv).
func (e *netProber) onGrid(t time.Time, iv time.Duration) time.Time {
	g := min(iv/10, gridMax)
	if g <= 0 {
		return t
	}
	k := (t.Sub(e.base) + g - 1) / g
	return e.base.Add(k * g)
}

// gridMax bounds the probes' grid (onGrid).
const gridMax = time.Second

// httpStatus reads the status of an http response: its status line once
// the header is complete (or the connection closed, or maxHTTPHeader
// read). A status of 200-399 passes. done is false while more is needed.
func httpStatus(b []byte, eof bool) (done, ok bool, result string) {
	if !eof && len(b) < maxHTTPHeader && !bytes.Contains(b, []byte("\r\n\r\n")) && !bytes.Contains(b, []byte("\n\n")) {
		return false, false, ""
	}
	line, _, found := bytes.Cut(b, []byte("\n"))
	if !found && !eof && len(b) < maxHTTPHeader {
		return false, false, ""
	}
	if len(b) == 0 {
		return true, false, "failed: the connection was closed without a response"
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	proto, rest, _ := bytes.Cut(line, []byte(" "))
	code, _, _ := bytes.Cut(rest, []byte(" "))
	if !bytes.HasPrefix(proto, []byte("HTTP/")) || len(code) != 3 || code[0] < '1' || code[0] > '9' || code[1] < '0' || code[1] > '9' || code[2] < '0' || code[2] > '9' {
		q := line[:min(len(line), 64)]
		return true, false, fmt.Sprintf("failed: malformed HTTP response %q", q)
	}
	n, _ := strconv.Atoi(string(code))
	return true, n >= 200 && n < 400, "returned " + string(code)
}

// netHeap orders runs by their next time.
type netHeap []*netRun

func (h netHeap) Len() int           { return len(h) }
func (h netHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h netHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *netHeap) Push(x any) {
	r := x.(*netRun)
	r.index = len(*h)
	*h = append(*h, r)
}
func (h *netHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	r.index = -1
	return r
}
