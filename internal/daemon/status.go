package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/internal/atomicfile"
	"reconciled.dev/reconciled/reconciler"
)

// ContainerStatus is one container as the daemon sees it: the status
// contract of `reconciled status -o json` and of STATE/status/NAME.json.
type ContainerStatus struct {
	Name string `json:"name"`
	// Phase is pending, pulling, creating, running, stopping, exited, backoff or
	// invalid.
	Phase string `json:"phase"`
	// Pid is the init's PID on the host while it runs, else 0.
	Pid      int `json:"pid"`
	Restarts int `json:"restarts"`
	// ExitCode is how the last run ended (128+N for signal N); null when
	// no run of this container has ended since the daemon started.
	ExitCode  *int   `json:"exitCode"`
	OOMKilled bool   `json:"oomKilled"`
	Source    string `json:"source"`
	// Runtime runs the container: "native" (reconciled's own executor),
	// "runc", "crun" or a runtime name the daemon is configured with; the
	// one it was created with while it exists, else the one its
	// definition names.
	Runtime string `json:"runtime"`
	// SpecHash is the hash of the definition the container runs (or will
	// be created from).
	SpecHash string `json:"specHash"`
	// Image is the normalized image reference the container runs, and
	// ImageDigest its manifest digest: the one it was created from while
	// it exists, else the one it will be created from ("" until pulled).
	// Both are absent for a container whose root is a directory.
	Image       string `json:"image,omitempty"`
	ImageDigest string `json:"imageDigest,omitempty"`
	// Message says why the container is as it is, or what is being done
	// about it; empty when it runs as wanted.
	Message string `json:"message"`
	// Health is what spec.health's probe says of the current run: none
	// (no probe, or not running), starting, healthy or unhealthy;
	// HealthFailures the current streak of failed probes and HealthOutput
	// the last probe's result (bounded). Ready is true when the container
	// is healthy, or runs when it has no probe.
	Health         string `json:"health"`
	Ready          bool   `json:"ready"`
	HealthFailures int    `json:"healthFailures"`
	HealthOutput   string `json:"healthOutput,omitempty"`
	// NotifyStatus is the last STATUS= the container sent on its notify
	// socket (spec.notify).
	NotifyStatus string `json:"notifyStatus,omitempty"`

	// LastError is the last action that failed, with its error.
	LastError string `json:"lastError,omitempty"`
	// Errors are the validation errors of the files that name it.
	Errors   []*desired.Error `json:"errors,omitempty"`
	Started  time.Time        `json:"started,omitzero"`
	Finished time.Time        `json:"finished,omitzero"`
	NextTry  time.Time        `json:"nextTry,omitzero"`
	// Events are the last MaxEvents things done or seen, oldest first
	// (status NAME and the status files only).
	Events []Event `json:"events,omitempty"`
}

// FileReport is one manifest file.
type FileReport struct {
	Path  string `json:"path"`
	Valid bool   `json:"valid"`
	// ContentHash is the sha256 of the bytes read (what the daemon saw).
	ContentHash string           `json:"contentHash,omitempty"`
	Containers  []string         `json:"containers"`
	Errors      []*desired.Error `json:"errors,omitempty"`
}

// Report is what `reconciled status` shows.
type Report struct {
	Containers []ContainerStatus `json:"containers"`
	Files      []FileReport      `json:"files"`
	// Revision is the applied revision of the manifests (git checkout or
	// git-sync link), "" when unknown.
	Revision  string `json:"revision,omitempty"`
	Manifests string `json:"manifests"`
	// CgroupDriver is the daemon's cgroup driver: cgroupfs or systemd
	// (--cgroup-driver auto picks systemd when it is PID 1).
	CgroupDriver string `json:"cgroupDriver,omitempty"`
	// CgroupParent is where this daemon's containers' cgroups go: the
	// directory (cgroupfs) or slice (systemd), its own (--cgroup-parent).
	CgroupParent string `json:"cgroupParent,omitempty"`
	// LogDriver is where the containers' output goes: file or journald.
	LogDriver string     `json:"logDriver,omitempty"`
	Daemon    DaemonInfo `json:"daemon"`
	// DiskPressure: the image store's file system is above the image
	// GC's high-water mark, and every image left is in use or too young
	// to remove. ImageDisk says more (absent before the first check).
	DiskPressure bool       `json:"diskPressure"`
	ImageDisk    *ImageDisk `json:"imageDisk,omitempty"`
	// Imports are the archives of the import directory: imported,
	// failed or refused (empty without an import directory).
	Imports []ImportReport `json:"imports"`
}

// DaemonInfo describes the running daemon.
type DaemonInfo struct {
	Pid     int       `json:"pid"`
	Started time.Time `json:"started"`
	// Loaded is false until the manifests have been read once; nothing is
	// done before.
	Loaded bool `json:"loaded"`
}

// fingerprint is what decides whether a status file must be rewritten.
type fingerprint struct {
	phase, source, hash, msg, lastErr string
	runtime, health                   string
	ready                             bool
	healthFailures                    int
	pid, restarts, exit               int
	exited, oom                       bool
	started, finished, next           time.Time
	nerr, nev                         int
	lastEv                            time.Time
}

func (c *ContainerStatus) fingerprint() fingerprint {
	f := fingerprint{
		phase: c.Phase, source: c.Source, hash: c.SpecHash, msg: c.Message, lastErr: c.LastError,
		runtime: c.Runtime, health: c.Health, ready: c.Ready, healthFailures: c.HealthFailures, pid: c.Pid, restarts: c.Restarts, oom: c.OOMKilled,
		started: c.Started, finished: c.Finished, next: c.NextTry,
		nerr: len(c.Errors), nev: len(c.Events),
	}
	if c.ExitCode != nil {
		f.exited, f.exit = true, *c.ExitCode
	}
	if n := len(c.Events); n > 0 {
		f.lastEv = c.Events[n-1].Time
	}
	return f
}

// publisherConfig is what a publisher reports from and whom it tells.
type publisherConfig struct {
	loop      *reconciler.Loop
	events    *eventLog
	exits     *lastExits
	layout    Layout
	manifests string
	log       *slog.Logger
	// cgroupDriver and logDriver are reported as they are; onStatus gets
	// a one-line summary after each publication (systemd's STATUS=; nil:
	// nowhere).
	cgroupDriver, cgroupParent, logDriver string
	onStatus                              func(string)
	// imageDisk is what the image GC last saw of the store's file system
	// (nil reports nothing).
	imageDisk func() *ImageDisk
	// imports lists the import directory's entries (nil: no import
	// directory).
	imports func() []ImportReport
	// refresh drops the cached observation of a container and has the loop
	// look at it again (nil: refresh does nothing).
	refresh func(name string)
	// health says what the probes say (nil: no probes).
	health *healthManager
}

// publisher turns the loop's statuses into Reports, status files and the
// events the loop does not log (backoff, exits, kept definitions).
type publisher struct {
	publisherConfig
	info DaemonInfo
	kick chan struct{}

	mu        sync.Mutex
	want      *desired.Set
	written   map[string]fingerprint
	keys      map[string]string // last status-derived event key per container
	cleanedUp bool
}

func newPublisher(c publisherConfig) *publisher {
	if c.onStatus == nil {
		c.onStatus = func(string) {}
	}
	p := &publisher{
		publisherConfig: c,
		info:            DaemonInfo{Pid: os.Getpid(), Started: time.Now().UTC()},
		kick:            make(chan struct{}, 1),
		written:         map[string]fingerprint{},
		keys:            map[string]string{},
	}
	return p
}

// Kick asks for a publication soon.
func (p *publisher) Kick() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// SetDesired records the desired set the loop was given.
func (p *publisher) SetDesired(s desired.Set) {
	p.mu.Lock()
	p.want = &s
	p.mu.Unlock()
	p.Kick()
}

// Run publishes once kicks stop for a debounce, or a maxDelay after the
// first of a stream of kicks (a converge). Whatever changes what a
// publication shows kicks it (the loop's statuses, events, exits, a new
// desired set), so an idle daemon publishes nothing and wakes for nothing.
func (p *publisher) Run(ctx context.Context) {
	const (
		debounce = 50 * time.Millisecond
		maxDelay = time.Second
	)
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	var first time.Time // of the kicks not yet published; zero: none
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			t.Reset(min(debounce, first.Add(maxDelay).Sub(now)))
			continue
		case <-t.C:
			first = time.Time{}
		}
		p.publish()
	}
}

// Report returns the current report (the files are written by Run).
func (p *publisher) Report() Report {
	rep, _ := p.snapshot()
	return rep
}

// Container returns one container's status with its events.
func (p *publisher) Container(name string) (ContainerStatus, bool) {
	r := p.Report()
	for _, c := range r.Containers {
		if c.Name == name {
			c.Events = p.events.events(name)
			return c, true
		}
	}
	return ContainerStatus{}, false
}

// publish writes the status files that changed and removes those of
// containers that are gone.
func (p *publisher) publish() {
	_, all := p.snapshot()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.want != nil {
		phases := make([]string, len(all))
		for i := range all {
			phases[i] = all[i].Phase
		}
		p.onStatus(p.withUnhealthy(statusLine(phases, p.want)))
	}
	seen := make(map[string]bool, len(all))
	for i := range all {
		c := &all[i]
		seen[c.Name] = true
		fp := c.fingerprint()
		if old, ok := p.written[c.Name]; ok && old == fp {
			continue
		}
		if err := p.writeStatus(c); err != nil {
			p.log.Warn("unable to write status file", "container", c.Name, "err", err)
			continue
		}
		p.written[c.Name] = fp
	}
	for n := range p.written {
		if !seen[n] {
			p.removeStatus(n)
		}
	}
	if p.want != nil && !p.cleanedUp {
		// Files left by an earlier daemon for containers that are gone:
		// neither in the loop's statuses nor named by a manifest (the
		// loop may not have looked at every container yet).
		for _, f := range p.want.Files {
			for _, n := range f.Containers {
				seen[n] = true
			}
		}
		for n := range p.want.Containers {
			seen[n] = true
		}
		if entries, err := os.ReadDir(p.layout.StatusDir()); err == nil {
			for _, e := range entries {
				if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && !seen[n] && !strings.HasPrefix(n, ".") {
					p.removeStatus(n)
				}
			}
		}
		for _, n := range p.events.names() {
			if !seen[n] {
				p.events.forget(n)
			}
		}
		p.cleanedUp = true
	}
}

// Summary is the one-line summary of the loop's statuses and the files
// (systemd's STATUS=).
func (p *publisher) Summary() string {
	sts := p.loop.Status()
	phases := make([]string, len(sts))
	for i, st := range sts {
		phases[i] = string(st.Phase)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.withUnhealthy(statusLine(phases, p.want))
}

// withUnhealthy adds the count of unhealthy containers to a status line.
func (p *publisher) withUnhealthy(line string) string {
	if p.health != nil {
		if n := p.health.Unhealthy(); n > 0 {
			line += fmt.Sprintf(", %d unhealthy", n)
		}
	}
	return line
}

// snapshot builds the report from the loop's statuses, recording the
// events they imply, and returns every container with its events too.
func (p *publisher) snapshot() (Report, []ContainerStatus) {
	sts := p.loop.Status()
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	rep := Report{Containers: make([]ContainerStatus, 0, len(sts)), Files: []FileReport{}, Manifests: p.manifests, Daemon: p.info,
		CgroupDriver: p.cgroupDriver, CgroupParent: p.cgroupParent, LogDriver: p.logDriver}
	if p.imageDisk != nil {
		if d := p.imageDisk(); d != nil {
			rep.ImageDisk, rep.DiskPressure = d, d.Pressure
		}
	}
	rep.Imports = []ImportReport{}
	if p.imports != nil {
		rep.Imports = p.imports()
	}
	if p.want != nil {
		rep.Daemon.Loaded = true
		rep.Revision = p.want.Revision
		for _, f := range p.want.Files {
			rep.Files = append(rep.Files, FileReport{Path: f.Path, Valid: len(f.Errors) == 0, ContentHash: f.ContentHash, Containers: f.Containers, Errors: f.Errors})
		}
		sort.Slice(rep.Files, func(i, j int) bool { return rep.Files[i].Path < rep.Files[j].Path })
	}
	all := make([]ContainerStatus, 0, len(sts))
	for _, st := range sts {
		p.statusEvent(st, now)
		c := p.containerStatus(st)
		rep.Containers = append(rep.Containers, c)
		c.Events = p.events.events(st.Name)
		all = append(all, c)
	}
	return rep, all
}

func (p *publisher) removeStatus(name string) {
	delete(p.written, name)
	delete(p.keys, name)
	p.events.forget(name)
	p.exits.forget(name)
	if err := os.Remove(filepath.Join(p.layout.StatusDir(), name+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		p.log.Warn("unable to remove status file", "container", name, "err", err)
	}
}

func (p *publisher) writeStatus(c *ContainerStatus) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	dir := p.layout.StatusDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Atomic for readers, not synced: a status file is a view, rewritten
	// by the next daemon.
	return atomicfile.Write(dir, c.Name+".json", append(data, '\n'), 0o644, atomicfile.NoSync)
}

// containerStatus converts the loop's status.
func (p *publisher) containerStatus(st reconciler.Status) ContainerStatus {
	c := ContainerStatus{
		Name: st.Name, Phase: string(st.Phase), Restarts: st.Restarts, Source: st.Source,
		Message: st.Reason, Errors: st.Errors, NextTry: st.NextTry,
	}
	if st.Desired != nil {
		c.SpecHash = st.Desired.Hash
		c.Runtime = st.Desired.Runtime
		c.Image, c.ImageDigest = st.Desired.Image, st.Desired.ImageDigest
	}
	if a := st.Actual; a != nil {
		if a.Applied != nil {
			c.Runtime = a.Applied.Runtime
			if a.Applied.Image != "" && (a.Live() || c.Image == "") {
				c.Image, c.ImageDigest = a.Applied.Image, a.Applied.ImageDigest
			}
		}
		if a.Live() {
			c.Pid = a.Pid
		}
		if a.SpecHash != "" {
			c.SpecHash = a.SpecHash
		}
		if c.Source == "" && a.Applied != nil {
			c.Source = a.Applied.Source
		}
		c.Started, c.Finished = a.Started, a.Finished
		if a.Exited || (!a.Live() && !a.Finished.IsZero()) {
			code := a.ExitCode
			c.ExitCode, c.OOMKilled = &code, a.OOMKilled
		}
	}
	if c.Runtime == "" {
		c.Runtime = desired.RuntimeNative
	}
	p.fillHealth(&c, st)
	if c.ExitCode == nil {
		if e, ok := p.exits.get(st.Name); ok && e.SpecHash == c.SpecHash {
			code := e.Code
			c.ExitCode, c.OOMKilled = &code, e.OOMKilled
		}
	}
	if st.Phase == reconciler.PhaseRunning && st.Reason == "" {
		p.events.clearError(st.Name)
	}
	c.LastError = p.events.lastError(st.Name)
	return c
}

// statusEvent records what the daemon saw without doing anything: a
// container in backoff, exited for good, kept because its file is invalid,
// or adopted at start.
func (p *publisher) statusEvent(st reconciler.Status, now time.Time) {
	var key, action string
	switch {
	case st.Phase == reconciler.PhaseBackoff:
		key, action = "backoff|"+st.NextTry.String(), "backoff"
	case st.Phase == reconciler.PhaseExited && st.Reason != "":
		key, action = "exited|"+st.Reason, "exited"
	case st.Phase == reconciler.PhaseInvalid:
		key, action = "invalid|"+st.Reason, "invalid"
	case strings.Contains(st.Reason, "kept: "):
		key, action = "kept|"+st.Reason, "kept"
	case st.Phase == reconciler.PhaseRunning && st.Reason == "":
		key = "running"
		// Nothing done to it since this daemon started: it ran before.
		if ev, any := p.events.last(st.Name); (!any || ev.Time.Before(p.info.Started)) && st.Actual != nil {
			action = "adopted"
		}
	default:
		key = string(st.Phase)
	}
	if p.keys[st.Name] == key {
		return
	}
	p.keys[st.Name] = key
	if action == "" {
		return
	}
	reason := st.Reason
	if action == "adopted" {
		reason = fmt.Sprintf("adopted: running since %s, pid %d", st.Actual.Started.Local().Format(time.DateTime), st.Actual.Pid)
	}
	p.events.add(st.Name, Event{Time: now, Action: action, Reason: reason})
}

// serve answers the status socket until ctx ends.
//
//	GET /v1/status             Report
//	GET /v1/containers/NAME    ContainerStatus with its events
//	POST /v1/containers/NAME/refresh   forget what is cached of NAME, look again
func (p *publisher) serve(ctx context.Context, l net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, p.Report())
	})
	mux.HandleFunc("GET /v1/containers/{name}", func(w http.ResponseWriter, r *http.Request) {
		c, ok := p.Container(r.PathValue("name"))
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no container %q", r.PathValue("name"))})
			return
		}
		writeJSON(w, http.StatusOK, c)
	})
	mux.HandleFunc("POST /v1/containers/{name}/refresh", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if p.refresh != nil {
			p.refresh(name)
		}
		writeJSON(w, http.StatusOK, map[string]string{"refreshed": name})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// listenSocket listens on the status socket, mode 0600 (a stale socket
// from a daemon that died is replaced; the caller holds the lock).
func listenSocket(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("unable to remove stale socket %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("unable to listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("unable to set the mode of %s: %w", path, err)
	}
	return l, nil
}

// ErrNoDaemon is returned by Query when no daemon answers on the socket.
var ErrNoDaemon = errors.New("no reconciled daemon is running with this state directory")

// Query asks the daemon whose state directory is state for path ("/v1/status",
// "/v1/containers/NAME") and decodes the answer into out.
func Query(ctx context.Context, state, path string, out any) error {
	return call(ctx, state, http.MethodGet, path, out)
}

// Refresh tells the daemon whose state directory is state that container
// name was changed behind its back (paused, resumed): it drops what it had
// cached of it and looks at it again before answering. ErrNoDaemon when no
// daemon runs there, which is fine for a caller: the next one reads the
// kernel anyway.
func Refresh(ctx context.Context, state, name string) error {
	var out map[string]string
	return call(ctx, state, http.MethodPost, "/v1/containers/"+name+"/refresh", &out)
}

func call(ctx context.Context, state, method, path string, out any) error {
	sock := Layout(state).Socket()
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, method, "http://reconciled"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return fmt.Errorf("%w (%s: %v)", ErrNoDaemon, sock, op.Err)
		}
		return fmt.Errorf("unable to query the daemon at %s: %w", sock, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		json.NewDecoder(resp.Body).Decode(&e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return &QueryError{Status: resp.StatusCode, Msg: e.Error}
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("unable to read the daemon's answer: %w", err)
	}
	return nil
}

// QueryError is an error the daemon answered with.
type QueryError struct {
	Status int
	Msg    string
}

func (e *QueryError) Error() string { return e.Msg }

// fillHealth sets c's health and readiness from the probes.
func (p *publisher) fillHealth(c *ContainerStatus, st reconciler.Status) {
	running := st.Actual != nil && st.Actual.Live() && st.Actual.Status == actual.StatusRunning
	h := Health{State: actual.HealthNone}
	if p.health != nil {
		h = p.health.Get(st.Name)
	}
	if h.State == actual.HealthNone && running && desired.Probe(st.Desired, st.Actual.Applied) != nil {
		h.State = actual.HealthStarting // not probed yet
	}
	if !h.ReadyKnown {
		h.Ready = running && h.State == actual.HealthNone && !st.Desired.Notify()
	}
	if !running {
		h.Ready = false
	}
	c.Health, c.Ready, c.HealthFailures, c.HealthOutput = string(h.State), h.Ready, h.Failures, h.Output
	c.NotifyStatus = h.NotifyStatus
}
