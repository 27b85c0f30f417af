package desired

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Health is spec.health: how the daemon checks that the container works,
// and what it does when it does not. Exactly one of Exec, HTTP and TCP is
// set. Defaults are Kubernetes': interval 10s, timeout 1s, retries
// (failureThreshold) 3, startPeriod 0, onUnhealthy restart.
//
// None of it is in the spec hash: a changed probe applies to the running
// container (the daemon probes with the wanted definition's settings), it
// does not recreate it.
type Health struct {
	Exec []string   `json:"exec,omitempty"`
	HTTP *HTTPProbe `json:"http,omitempty"`
	TCP  *TCPProbe  `json:"tcp,omitempty"`

	Interval time.Duration `json:"interval"`
	Timeout  time.Duration `json:"timeout"`
	// Retries is how many failures in a row make the container unhealthy.
	Retries int `json:"retries"`
	// StartPeriod is how long after the start failures do not count (a
	// success ends it early, as docker's start-period).
	StartPeriod time.Duration `json:"startPeriod,omitempty"`
	OnUnhealthy OnUnhealthy   `json:"onUnhealthy"`
}

// HTTPProbe is spec.health.http: a GET of Path on the container's Port,
// inside its network namespace; a status of 200-399 is a success.
type HTTPProbe struct {
	Port int    `json:"port"`
	Path string `json:"path"`
}

// TCPProbe is spec.health.tcp: a connection to Port inside the container's
// network namespace.
type TCPProbe struct {
	Port int `json:"port"`
}

// OnUnhealthy is spec.health.onUnhealthy.
type OnUnhealthy string

const (
	// OnUnhealthyRestart (default) stops the container with its stop
	// signal and timeout and starts it again.
	OnUnhealthyRestart OnUnhealthy = "restart"
	// OnUnhealthyNone only reports.
	OnUnhealthyNone OnUnhealthy = "none"
)

// Health defaults (Kubernetes').
const (
	DefaultHealthInterval = 10 * time.Second
	DefaultHealthTimeout  = time.Second
	DefaultHealthRetries  = 3
)

// Kind names the probe: "exec", "http" or "tcp".
func (h *Health) Kind() string {
	switch {
	case h.HTTP != nil:
		return "http"
	case h.TCP != nil:
		return "tcp"
	default:
		return "exec"
	}
}

// Describe is the probe in words: "http GET :8080/healthz", "tcp :5432",
// "exec /bin/check".
func (h *Health) Describe() string {
	switch {
	case h.HTTP != nil:
		return fmt.Sprintf("http GET :%d%s", h.HTTP.Port, h.HTTP.Path)
	case h.TCP != nil:
		return fmt.Sprintf("tcp :%d", h.TCP.Port)
	default:
		return "exec " + strings.Join(h.Exec, " ")
	}
}

// Condition is the condition of an entry of spec.after.
type Condition string

const (
	ConditionStarted   Condition = "started" // default: its process was started
	ConditionHealthy   Condition = "healthy" // its probe succeeded (needs spec.health)
	ConditionReady     Condition = "ready"   // READY=1 with notify, else healthy with a probe, else started
	ConditionCompleted Condition = "completed"
)

// Dependency is one entry of spec.after: the container is created only
// once container Name meets Condition.
type Dependency struct {
	Name      string    `json:"name"`
	Condition Condition `json:"condition"`
}

// NotifySocket is the NOTIFY_SOCKET of container name with spec.notify:
// an abstract unix datagram socket that the daemon binds in the
// container's network namespace before its process starts.
func NotifySocket(name string) string { return "@reconciled-notify/" + name }

// HealthOf returns c's spec.health, nil when it has none.
func (c *Container) HealthOf() *Health {
	if c == nil || c.Manifest == nil {
		return nil
	}
	return c.Manifest.Spec.Health
}

// After returns c's spec.after.
func (c *Container) After() []Dependency {
	if c == nil || c.Manifest == nil {
		return nil
	}
	return c.Manifest.Spec.After
}

// Notify says whether c has spec.notify: true.
func (c *Container) Notify() bool {
	return c != nil && c.Manifest != nil && c.Manifest.Spec.Notify
}

// Probe is the probe of a container wanted as want that runs as applied
// (the definition it was created from; nil when not known): want's
// spec.health; else, for a container of an image, the HEALTHCHECK of the
// image it runs, as recorded when it was created (the image that runs,
// not one pulled since); nil when there is none or the manifest says
// `health: none`.
func Probe(want, applied *Container) *Health {
	if h := want.HealthOf(); h != nil {
		return h
	}
	if want == nil || want.Manifest == nil || want.Manifest.Spec.HealthNone || want.Image == "" || applied == nil || applied.Image != want.Image {
		return nil
	}
	return applied.ImageHealth
}

// mayHaveProbe says whether c can have a probe: its own spec.health, or an
// image whose HEALTHCHECK is not turned off (known only once it runs).
func (c *Container) mayHaveProbe() bool {
	return c.HealthOf() != nil || (c.Image != "" && c.Manifest != nil && !c.Manifest.Spec.HealthNone)
}

// ImageHealthcheck is an image config's Healthcheck (docker's HEALTHCHECK
// instruction): Test is {} (inherit: none here), {"NONE"}, {"CMD", args...}
// or {"CMD-SHELL", command}; a zero duration or retries means docker's
// default.
type ImageHealthcheck struct {
	Test                           []string
	Interval, Timeout, StartPeriod time.Duration
	Retries                        int
}

// Docker's defaults for an image's HEALTHCHECK, which its author wrote
// against: they differ from spec.health's (Kubernetes') on purpose.
const (
	imageHealthInterval = 30 * time.Second
	imageHealthTimeout  = 30 * time.Second
	imageHealthRetries  = 3
)

// imageProbe maps an image's HEALTHCHECK to a probe: CMD as an exec probe,
// CMD-SHELL through /bin/sh -c as docker does, docker's defaults for what
// is zero, and values below spec.health's bounds raised to them (a 1 ms
// interval would spend a core). nil for none, NONE or an unknown form,
// and for an exec probe in a container of another runtime than native,
// where exec probes cannot run (why says so).
func imageProbe(hc *ImageHealthcheck, runtime string) (h *Health, why string) {
	if hc == nil || len(hc.Test) == 0 {
		return nil, ""
	}
	var args []string
	switch hc.Test[0] {
	case "NONE":
		return nil, ""
	case "CMD":
		args = hc.Test[1:]
	case "CMD-SHELL":
		if len(hc.Test) != 2 {
			return nil, fmt.Sprintf("HEALTHCHECK CMD-SHELL takes one command, not %d strings", len(hc.Test)-1)
		}
		args = []string{"/bin/sh", "-c", hc.Test[1]}
	default:
		return nil, fmt.Sprintf("HEALTHCHECK test %q is not NONE, CMD or CMD-SHELL", hc.Test[0])
	}
	if len(args) == 0 || args[0] == "" {
		return nil, "HEALTHCHECK has no command"
	}
	if runtime != "" && runtime != RuntimeNative {
		return nil, "HEALTHCHECK runs a command, which only containers of the native runtime can probe (this one's is " + runtime + "); give spec.health an http or tcp probe"
	}
	or := func(d, def, lo time.Duration) time.Duration {
		if d <= 0 {
			return def
		}
		return max(d, lo)
	}
	h = &Health{
		Exec:        args,
		Interval:    or(hc.Interval, imageHealthInterval, 100*time.Millisecond),
		Timeout:     or(hc.Timeout, imageHealthTimeout, 10*time.Millisecond),
		StartPeriod: max(hc.StartPeriod, 0),
		Retries:     imageHealthRetries,
		OnUnhealthy: OnUnhealthyRestart,
	}
	if hc.Retries > 0 {
		h.Retries = min(hc.Retries, 1000)
	}
	return h, ""
}

// sameOutsideHash says whether a and b agree on what the spec hash leaves
// out but the daemon acts on (health, after): Set.Equal needs it, or a
// changed probe would never reach the daemon.
func sameOutsideHash(a, b *Container) bool {
	return reflect.DeepEqual(a.HealthOf(), b.HealthOf()) && reflect.DeepEqual(a.After(), b.After()) &&
		a.healthNone() == b.healthNone() && reflect.DeepEqual(a.ImageHealth, b.ImageHealth)
}

func (c *Container) healthNone() bool {
	return c != nil && c.Manifest != nil && c.Manifest.Spec.HealthNone
}

var (
	healthFields = manifestKeys[Health]()
	httpFields   = manifestKeys[HTTPProbe]()
	tcpFields    = manifestKeys[TCPProbe]()
	afterFields  = manifestKeys[Dependency]()
)

// health parses spec.health.
func (p *parser) health(n *yaml.Node, s *ManifestSpec) {
	if v := p.deref(n); v.Kind != yaml.MappingNode {
		p.errorf(v, "spec.health", "must be a probe such as {http: {port: 8080, path: /healthz}}, or none (no probe, not even the image's HEALTHCHECK), not %s", describe(v))
		return
	}
	hf, ok := p.mapping(n, "spec.health", healthFields...)
	if !ok {
		return
	}
	h := &Health{Interval: DefaultHealthInterval, Timeout: DefaultHealthTimeout, Retries: DefaultHealthRetries, OnUnhealthy: OnUnhealthyRestart}
	var kinds []field
	for _, k := range []string{"exec", "http", "tcp"} {
		if f, ok := hf[k]; ok {
			kinds = append(kinds, f)
		}
	}
	switch {
	case len(kinds) == 0:
		p.errorf(p.deref(n), "spec.health", "needs one probe: exec (e.g. [\"/bin/check\"]), http ({port: 8080, path: /healthz}) or tcp ({port: 5432})")
	case len(kinds) > 1:
		names := make([]string, len(kinds))
		for i, f := range kinds {
			names[i] = f.key.Value
		}
		p.errorf(kinds[1].key, "spec.health."+kinds[1].key.Value, "exec, http and tcp are exclusive: give exactly one probe (here: %s)", strings.Join(names, " and "))
	}
	if f, ok := hf["exec"]; ok {
		if list, nodes, ok := p.strList(f.val, "spec.health.exec"); ok {
			switch {
			case len(list) == 0:
				p.errorf(nodes0(f.val, nodes), "spec.health.exec", `must not be empty (e.g. ["/bin/check"])`)
			case list[0] == "":
				p.errorf(nodes[0], "spec.health.exec[0]", "the program must not be empty")
			default:
				h.Exec = list
			}
		}
	}
	if f, ok := hf["http"]; ok {
		if m, ok := p.mapping(f.val, "spec.health.http", httpFields...); ok {
			h.HTTP = &HTTPProbe{Path: "/"}
			h.HTTP.Port = p.port(m, f.val, "spec.health.http")
			if pf, ok := m["path"]; ok {
				if v, ok := p.str(pf.val, "spec.health.http.path"); ok {
					if !strings.HasPrefix(v, "/") || strings.ContainsAny(v, " \t\r\n") {
						p.errorf(p.deref(pf.val), "spec.health.http.path", "%q is not a request path (start with '/', no spaces; e.g. /healthz)", v)
					} else {
						h.HTTP.Path = v
					}
				}
			}
		}
	}
	if f, ok := hf["tcp"]; ok {
		if m, ok := p.mapping(f.val, "spec.health.tcp", tcpFields...); ok {
			h.TCP = &TCPProbe{Port: p.port(m, f.val, "spec.health.tcp")}
		}
	}
	if f, ok := hf["interval"]; ok {
		h.Interval = p.duration(f.val, "spec.health.interval", 100*time.Millisecond, 24*time.Hour, "10s")
	}
	if f, ok := hf["timeout"]; ok {
		h.Timeout = p.duration(f.val, "spec.health.timeout", 10*time.Millisecond, time.Hour, "1s")
	}
	if f, ok := hf["startPeriod"]; ok {
		h.StartPeriod = p.duration(f.val, "spec.health.startPeriod", 0, 24*time.Hour, "30s")
	}
	if f, ok := hf["retries"]; ok {
		v := p.deref(f.val)
		r, err := strconv.Atoi(v.Value)
		switch {
		case v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || err != nil:
			p.errorf(v, "spec.health.retries", "must be a whole number (failures in a row; e.g. 3), not %s", describe(v))
		case r < 1 || r > 1000:
			p.errorf(v, "spec.health.retries", "%d is out of range (1 to 1000)", r)
		default:
			h.Retries = r
		}
	}
	if f, ok := hf["onUnhealthy"]; ok {
		if v, ok := p.str(f.val, "spec.health.onUnhealthy"); ok {
			switch OnUnhealthy(v) {
			case OnUnhealthyRestart, OnUnhealthyNone:
				h.OnUnhealthy = OnUnhealthy(v)
			default:
				p.errorf(p.deref(f.val), "spec.health.onUnhealthy", "%q is not an action (use restart or none)", v)
			}
		}
	}
	s.Health = h
}

// port reads the required port of a probe mapping.
func (p *parser) port(m map[string]field, n *yaml.Node, at string) int {
	f, ok := m["port"]
	if !ok {
		p.errorf(p.deref(n), at+".port", "required: the port the container listens on (1 to 65535)")
		return 0
	}
	v := p.deref(f.val)
	port, err := strconv.Atoi(v.Value)
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || err != nil || port < 1 || port > 65535 {
		p.errorf(v, at+".port", "%s is not a port (a number from 1 to 65535)", describe(v))
		return 0
	}
	return port
}

// duration reads a duration ("10s", "1m30s", or a whole number of
// seconds) within [lo, hi]; 0 when it is not one (the error is recorded).
func (p *parser) duration(n *yaml.Node, at string, lo, hi time.Duration, example string) time.Duration {
	d, _ := p.durationIn(n, at, lo, hi, example+" or 500ms", "")
	return d
}

// durationIn is duration with the whole example text ("10s or 1m30s") and
// the range as the error shows it ("" for "lo to hi"); ok is false after
// an error.
func (p *parser) durationIn(n *yaml.Node, at string, lo, hi time.Duration, examples, span string) (time.Duration, bool) {
	val := p.deref(n)
	v, ok := p.str(n, at)
	if !ok {
		return 0, false
	}
	var d time.Duration
	var err error
	if val.ShortTag() == "!!int" {
		var secs int64
		secs, err = strconv.ParseInt(v, 10, 64)
		if secs > 1<<20 {
			err = errors.New("too large")
		}
		d = time.Duration(secs) * time.Second
	} else {
		d, err = time.ParseDuration(v)
	}
	if span == "" {
		span = fmt.Sprintf("%s to %s", lo, hi)
	}
	switch {
	case err != nil:
		p.errorf(val, at, "%q is not a duration (use e.g. %s)", v, examples)
	case d < lo || d > hi:
		p.errorf(val, at, "%q is out of range (%s)", v, span)
	default:
		return d, true
	}
	return 0, false
}

// after parses spec.after. Names are checked against the directory by
// checkAfter (Next); here only their form. It returns the line of each
// entry's name.
func (p *parser) after(n *yaml.Node, s *ManifestSpec, self string) []int {
	seq := p.deref(n)
	if seq.Kind != yaml.SequenceNode {
		p.errorf(seq, "spec.after", "must be a list such as [{name: db, condition: healthy}], not %s", describe(seq))
		return nil
	}
	var lines []int
	seen := map[string]int{}
	for i, item := range seq.Content {
		at := fmt.Sprintf("spec.after[%d]", i)
		m, ok := p.mapping(item, at, afterFields...)
		if !ok {
			continue
		}
		d := Dependency{Condition: ConditionStarted}
		line := p.deref(item).Line
		nf, ok := m["name"]
		if !ok {
			p.errorf(p.deref(item), at+".name", "required: the name of the container to wait for")
			continue
		}
		v, ok := p.str(nf.val, at+".name")
		if !ok {
			continue
		}
		line = p.deref(nf.val).Line
		switch {
		case !isDNS1123Label(v) || len(v) > 63:
			p.errorf(p.deref(nf.val), at+".name", "%q is not a container name (a lowercase DNS-1123 label such as db)", v)
			continue
		case v == self && self != "":
			p.errorf(p.deref(nf.val), at+".name", "%q is this container itself; a container cannot wait for itself", v)
			continue
		}
		if first, dup := seen[v]; dup {
			p.errorf(p.deref(nf.val), at+".name", "%q is named twice (first on line %d)", v, first)
			continue
		}
		seen[v] = line
		d.Name = v
		if cf, ok := m["condition"]; ok {
			if c, ok := p.str(cf.val, at+".condition"); ok {
				switch Condition(c) {
				case ConditionStarted, ConditionHealthy, ConditionReady, ConditionCompleted:
					d.Condition = Condition(c)
				default:
					p.errorf(p.deref(cf.val), at+".condition", "%q is not a condition (use started, healthy, ready or completed)", c)
				}
			}
		}
		s.After = append(s.After, d)
		lines = append(lines, line)
	}
	return lines
}

// healthNotifyAfter parses spec.health, spec.notify and spec.after.
func (p *parser) healthNotifyAfter(sp map[string]field, m *Manifest) {
	s := &m.Spec
	if f, ok := sp["health"]; ok {
		if v := p.deref(f.val); v.Kind == yaml.ScalarNode && v.Value == "none" {
			s.HealthNone = true // no probe, not even the image's HEALTHCHECK
		} else {
			p.health(f.val, s)
		}
		if s.Health != nil && s.Health.Exec != nil && s.Runtime != RuntimeNative {
			p.errorf(p.deref(f.val), "spec.health.exec", "exec probes run only in containers of the native runtime (this one's is %s); use an http or tcp probe", s.Runtime)
		}
	}
	if f, ok := sp["notify"]; ok {
		if v, ok := p.boolean(f.val, "spec.notify"); ok && v {
			s.Notify = true
			if _, set := s.Env["NOTIFY_SOCKET"]; set {
				p.errorf(p.deref(f.val), "spec.notify", "spec.env sets NOTIFY_SOCKET too; remove it from env (notify: true sets it to the daemon's socket)")
			}
		}
	}
	if f, ok := sp["after"]; ok {
		p.afterLines = p.after(f.val, s, m.Metadata.Name)
	}
}
