package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// lowCostServer is one server the low-cost mode must classify.
type lowCostServer struct {
	name string
	port int
	pid  func() int
}

// startNginx runs nginx on two free loopback ports: one with sendfile on,
// one with sendfile off (read into a buffer, write from it). It returns the
// ports and the worker's pid.
func startNginx(t *testing.T, root string) (sendfilePort, readPort int, worker func() int) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx is not installed (apt-get install nginx-light): no sendfile and read+write servers to watch")
	}
	dir := t.TempDir()
	sendfilePort, readPort = freePort(t), freePort(t)
	// user root: the worker must read the test's private temp dir.
	conf := fmt.Sprintf(`daemon off;
user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
  server { listen 127.0.0.1:%[2]d; root %[4]s; sendfile on; }
  server { listen 127.0.0.1:%[3]d; root %[4]s; sendfile off; output_buffers 1 64k; }
}
`, dir, sendfilePort, readPort, root)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	master := startChild(t, bin, "-c", filepath.Join(dir, "nginx.conf"), "-p", dir)
	worker = func() int {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", master.Process.Pid, master.Process.Pid))
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return 0
		}
		pid, _ := strconv.Atoi(f[0])
		return pid
	}
	waitHTTP(t, sendfilePort)
	waitHTTP(t, readPort)
	return sendfilePort, readPort, worker
}

// startHAProxy runs haproxy in TCP mode, forced to splice both ways, in
// front of a backend port.
func startHAProxy(t *testing.T, backend int) (port int, pid func() int) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy is not installed (apt-get install haproxy): no splice proxy to watch")
	}
	port = freePort(t)
	cfg := fmt.Sprintf("global\n  maxconn 64\n  nbthread 1\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  option splice-request\n  option splice-response\nlisten p\n  bind 127.0.0.1:%d\n  server s 127.0.0.1:%d\n", port, backend)
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startChild(t, bin, "-f", path, "-db")
	waitHTTP(t, port)
	return port, func() int { return c.Process.Pid }
}

func waitHTTP(t *testing.T, port int) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/none", port)); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("nothing answers on port %d", port)
}

// fetchLoop downloads url until ctx ends, with a fresh connection each time.
func fetchLoop(ctx context.Context, url string) error {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
	}
	return nil
}

// watchTotal runs watch on pid with the given cost for d, closes attached
// once the probes are attached, and returns the whole-run summary record.
func watchTotal(t *testing.T, pid int, cost string, d time.Duration, attached chan<- struct{}) (map[string]any, error) {
	var out, errb lockedBuffer
	root := newRootCmd()
	args := []string{"watch", "--mode", "ebpf", "--pid", strconv.Itoa(pid),
		"--interval", "500ms", "--duration", d.String(), "--json"}
	if c, ok := sampledCosts[cost]; ok {
		args = append(args, c...)
	} else {
		args = append(args, "--cost", cost)
	}
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(context.Background()) }()
	for !strings.Contains(errb.String(), "watching") {
		select {
		case err := <-done:
			return nil, fmt.Errorf("watch --cost %s ended before attaching: %v\n%s", cost, err, errb.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	close(attached)
	if err := <-done; err != nil {
		return nil, fmt.Errorf("watch --cost %s: %v\n%s", cost, err, errb.String())
	}
	for _, r := range watchJSONAll(t, out.String()) {
		if r["interval"] == "total" {
			return r, nil
		}
	}
	return nil, fmt.Errorf("watch --cost %s printed no total record:\n%s", cost, out.String())
}

// sampledCosts are the sampled low-cost variants the tests compare, by
// the name they go by in them.
var sampledCosts = map[string][]string{
	"low/2": {"--cost", "low", "--duty", "2", "--duty-period", "100ms"},
}

func num(r map[string]any, k string) (float64, bool) {
	v, ok := r[k].(float64)
	return v, ok
}

// TestWatchLowCostClassifies: on a sendfile server, a read+write server
// and a splice proxy, watch --cost low and watch --cost exact, attached at
// the same time to the same workload, name the same transfer style with
// the same copies per sent and received byte; the low-cost byte totals'
// error against the exact ones is measured and bounded. So does the
// sampled low-cost mode (--duty 2: attached half the time, counts
// weighted by 2, 100 ms periods), with a wider bound on its totals: its error is the
// sampling error of 20 windows of a bursty load (8 MiB fetches of ~5 ms).
func TestWatchLowCostClassifies(t *testing.T) {
	ebpfOrSkip(t)
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "f"), make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	sf, rw, worker := startNginx(t, root)
	proxy, haproxy := startHAProxy(t, sf)
	for _, srv := range []lowCostServer{
		{"sendfile nginx", sf, worker}, {"read+write nginx", rw, worker}, {"splice haproxy", proxy, haproxy},
	} {
		t.Run(srv.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var wg sync.WaitGroup
			recs := map[string]map[string]any{}
			var mu sync.Mutex
			var ready []chan struct{}
			for _, cost := range []string{"exact", "low", "low/2"} {
				wg.Add(1)
				attached := make(chan struct{})
				ready = append(ready, attached)
				go func() {
					defer wg.Done()
					r, err := watchTotal(t, srv.pid(), cost, 4*time.Second, attached)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					recs[cost] = r
					mu.Unlock()
				}()
			}
			for _, c := range ready {
				select {
				case <-c:
				case <-time.After(20 * time.Second):
					t.Fatal("watch did not attach within 20 s")
				}
			}
			loadErr := make(chan error, 1)
			go func() { loadErr <- fetchLoop(ctx, fmt.Sprintf("http://127.0.0.1:%d/f", srv.port)) }()
			time.Sleep(2 * time.Second)
			cancel()
			if err := <-loadErr; err != nil {
				t.Fatalf("load: %v", err)
			}
			wg.Wait()
			exact, low, sampled := recs["exact"], recs["low"], recs["low/2"]
			if exact == nil || low == nil || sampled == nil {
				t.Fatal("a watch failed")
			}
			compareLowCost(t, exact, low, 0.05)
			t.Log("sampled, --duty 2 --duty-period 100ms (20 windows of 50 ms in the 2 s of load):")
			compareLowCost(t, exact, sampled, 0.15)
		})
	}
}

// compareLowCost checks the low-cost record against the exact one.
func compareLowCost(t *testing.T, exact, low map[string]any, bound float64) {
	t.Helper()
	if low["estimate"] != true || low["mode"] != "ebpf-low" {
		t.Errorf("low-cost record not labelled an estimate: mode %v estimate %v", low["mode"], low["estimate"])
	}
	if ev, lv := exact["verdict"], low["verdict"]; ev != lv {
		t.Errorf("verdicts differ:\n exact %v\n low   %v", ev, lv)
	}
	for _, k := range []string{"copies_per_sent_byte", "copies_per_received_byte"} {
		e, eok := num(exact, k)
		l, lok := num(low, k)
		t.Logf("%s: exact %.4f, low %.4f", k, e, l)
		if eok != lok || math.Abs(e-l) > 0.05 {
			t.Errorf("%s: exact %v (%v), low %v (%v)", k, e, eok, l, lok)
		}
	}
	for _, k := range []string{"delivered_bytes", "received_bytes", "copied_to_user_bytes", "copied_from_user_bytes", "moved_in_kernel_bytes"} {
		e, _ := num(exact, k)
		l, _ := num(low, k)
		rel := math.Abs(l-e) / math.Max(e, 1)
		t.Logf("%s: exact %.0f, low %.0f, error %.2f%%", k, e, l, 100*rel)
		if e > 1e6 && rel > bound {
			t.Errorf("%s: low-cost %.0f vs exact %.0f, error %.1f%% above %.0f%%", k, l, e, 100*rel, 100*bound)
		}
	}
	if _, ok := low["syscalls"]; ok {
		t.Error("the low-cost record has syscalls, which it cannot measure")
	}
}
