package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The paced workload of the exporter tests: after a byte on stdin it makes
// rate pwrite64 calls of promBytes a second to a temp file for secs
// seconds, prints "done", and then lives until stdin closes.
const (
	promWorkEnv = "COPYSCOPE_PROM_WORKLOAD"
	promBytes   = 1000
)

func TestPromWorkloadChild(t *testing.T) {
	spec := os.Getenv(promWorkEnv)
	if spec == "" {
		t.Skip("helper process of the Prometheus exporter tests; it runs only as their child")
	}
	var rate, secs int
	if _, err := fmt.Sscan(spec, &rate, &secs); err != nil {
		fmt.Printf("error bad spec %q\n", spec)
		os.Exit(3)
	}
	fd, err := unix.Open(os.TempDir(), unix.O_TMPFILE|unix.O_RDWR, 0o600)
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(3)
	}
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadByte(); err != nil {
		os.Exit(0)
	}
	buf := make([]byte, promBytes)
	start, total, made := time.Now(), rate*secs, 0
	for made < total {
		// Catch up with the clock every 5 ms: the rate holds on a
		// loaded machine too.
		due := min(total, int(time.Since(start).Seconds()*float64(rate)))
		for ; made < due; made++ {
			if n, err := unix.Pwrite(fd, buf, 0); n != promBytes || err != nil {
				fmt.Printf("error pwrite %d %v\n", n, err)
				os.Exit(3)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Printf("done %d\n", made)
	io.Copy(io.Discard, in)
	os.Exit(0)
}

// promWorkload starts the paced workload; start() lets it begin.
type promWorkload struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startPromWorkload(t *testing.T, rate, secs int) *promWorkload {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPromWorkloadChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %d", promWorkEnv, rate, secs))
	w := &promWorkload{cmd: cmd, lines: make(chan string, 8)}
	var err error
	if w.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
	}()
	t.Cleanup(func() {
		w.stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return w
}

func (w *promWorkload) start(t *testing.T) {
	t.Helper()
	if _, err := w.stdin.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
}

// wait returns when the workload printed done.
func (w *promWorkload) wait(t *testing.T, limit time.Duration) {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case line, ok := <-w.lines:
			if !ok || strings.HasPrefix(line, "error") {
				t.Fatalf("workload: %q (exited: %v)", line, !ok)
			}
			if strings.HasPrefix(line, "done") {
				return
			}
		case <-deadline:
			t.Fatalf("workload not done after %v", limit)
		}
	}
}

// watchProc is copyscope watch running as its own process.
type watchProc struct {
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	addr   string // the exporter's host:port
}

func startWatchProm(t *testing.T, bin string, args ...string) *watchProc {
	t.Helper()
	w := &watchProc{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	w.cmd = exec.Command(bin, append([]string{"watch", "--mode", "ebpf", "--prometheus", "127.0.0.1:0"}, args...)...)
	w.cmd.Stdout, w.cmd.Stderr = w.stdout, w.stderr
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.cmd.Process.Kill()
		w.cmd.Wait()
	})
	re := regexp.MustCompile(`metrics at http://([^/]+)/metrics`)
	for i := 0; i < 1000; i++ {
		if m := re.FindStringSubmatch(w.stderr.String()); m != nil && strings.Contains(w.stderr.String(), "watching") {
			w.addr = m[1]
			return w
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("watch never said where it serves metrics: %s", w.stderr.String())
	return nil
}

// stop ends watch with SIGINT and waits for it.
func (w *watchProc) stop(t *testing.T) {
	t.Helper()
	w.cmd.Process.Signal(syscall.SIGINT)
	if err := w.cmd.Wait(); err != nil {
		t.Fatalf("watch: %v\n%s", err, w.stderr.String())
	}
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startPrometheus runs Debian's prometheus on loopback, scraping target
// every second, and returns its base URL.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed (apt-get install prometheus): the exporter cannot be checked against a real server")
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: copyscope\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	var logs lockedBuffer
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+listen)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	base := "http://" + listen
	for i := 0; i < 300; i++ {
		if resp, err := http.Get(base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("prometheus never became ready:\n%s", logs.String())
	return ""
}

// promQuery evaluates an instant PromQL query (at when, if not zero) and
// returns the value of its single series, or false when it has none.
func promQuery(t *testing.T, base, query string, when time.Time) (float64, bool) {
	t.Helper()
	v := url.Values{"query": {query}}
	if !when.IsZero() {
		v.Set("time", strconv.FormatFloat(float64(when.UnixNano())/1e9, 'f', 3, 64))
	}
	resp, err := http.Get(base + "/api/v1/query?" + v.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("query %s: %v", query, err)
	}
	if body.Status != "success" {
		t.Fatalf("query %s: %s", query, body.Error)
	}
	switch len(body.Data.Result) {
	case 0:
		return 0, false
	case 1:
	default:
		t.Fatalf("query %s: %d series, want one", query, len(body.Data.Result))
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("query %s: value %q: %v", query, s, err)
	}
	return f, true
}

// jsonTotal sums a syscall's count over watch --json records of a subject.
func jsonTotal(t *testing.T, out, subject, syscall string) uint64 {
	t.Helper()
	var n uint64
	for _, r := range watchJSON(t, out) {
		if r["subject"] != subject {
			continue
		}
		if by, ok := r["syscalls_by_name"].(map[string]any); ok {
			v, _ := by[syscall].(float64)
			n += uint64(v)
		}
	}
	return n
}

// TestWatchPrometheus: a real Prometheus server scrapes watch --prometheus
// on a paced workload. PromQL totals equal the workload's arithmetic and
// watch --json's totals; the PromQL rate matches the workload's rate.
func TestWatchPrometheus(t *testing.T) {
	ebpfOrSkip(t)
	const rate, secs = 2000, 8
	bin := buildBinary(t)
	work := startPromWorkload(t, rate, secs)
	pid := work.cmd.Process.Pid
	w := startWatchProm(t, bin, "--pid", strconv.Itoa(pid), "--interval", "500ms", "--json")
	prom := startPrometheus(t, w.addr)
	sel := fmt.Sprintf(`copyscope_syscalls_total{syscall="pwrite64",pid="%d"}`, pid)
	// Wait for the first scrapes, so the series starts before the work.
	for i := 0; i < 100; i++ {
		if _, ok := promQuery(t, prom, sel, time.Time{}); ok {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	work.start(t)
	begin := time.Now()
	work.wait(t, time.Duration(secs+20)*time.Second)
	end := time.Now()
	time.Sleep(3 * time.Second) // a few scrapes of the final counts

	want := float64(rate * secs)
	if got, ok := promQuery(t, prom, sel, time.Time{}); !ok || got != want {
		t.Errorf("PromQL %s = %v (present %v), the workload made %v calls", sel, got, ok, want)
	}
	bytesSel := fmt.Sprintf(`copyscope_cpu_copied_bytes_total{direction="from_user",fd_class="file",pid="%d"}`, pid)
	if got, _ := promQuery(t, prom, bytesSel, time.Time{}); got != want*promBytes {
		t.Errorf("PromQL %s = %v, the workload wrote %v bytes", bytesSel, got, want*promBytes)
	}
	// The rate over the middle of the run, where the workload is steady.
	mid := begin.Add(end.Sub(begin) / 2)
	rq := fmt.Sprintf("rate(%s[4s])", sel)
	if got, ok := promQuery(t, prom, rq, mid); !ok || got < rate*0.8 || got > rate*1.2 {
		t.Errorf("PromQL %s at mid-run = %.0f/s (present %v), the workload ran at %d/s", rq, got, ok, rate)
	} else {
		t.Logf("PromQL %s at mid-run = %.0f/s; workload %d/s", rq, got, rate)
	}
	w.stop(t)
	subject := ""
	if m := regexp.MustCompile(`"subject":"([^"]*\[` + strconv.Itoa(pid) + `\])"`).FindStringSubmatch(w.stdout.String()); m != nil {
		subject = m[1]
	}
	if got := jsonTotal(t, w.stdout.String(), subject, "pwrite64"); float64(got) != want {
		t.Errorf("watch --json total of pwrite64 for %q = %d, PromQL and the workload say %v", subject, got, want)
	}
}

// scrape fetches /metrics once.
func scrape(client *http.Client, addr string) (string, error) {
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return string(b), nil
}

// TestWatchPrometheusHostile: scrapers that connect and never send or
// never read, 100 concurrent scrapes, and a subject that exits mid-scrape;
// watch keeps counting and the endpoint keeps answering.
func TestWatchPrometheusHostile(t *testing.T) {
	ebpfOrSkip(t)
	bin := buildBinary(t)
	steady := startPromWorkload(t, 1000, 30)
	brief := startPromWorkload(t, 1000, 30)
	w := startWatchProm(t, bin, "--pid", strconv.Itoa(steady.cmd.Process.Pid), "--pid", strconv.Itoa(brief.cmd.Process.Pid), "--interval", "200ms")
	steady.start(t)
	brief.start(t)
	// Idle connections and requests whose answers are never read.
	for i := 0; i < 20; i++ {
		for _, req := range []string{"", "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"} {
			c, err := net.Dial("tcp", w.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if req != "" {
				c.Write([]byte(req))
			}
		}
	}
	client := &http.Client{Timeout: 5 * time.Second}
	steadySel := fmt.Sprintf(`copyscope_syscalls_total{comm="copyscope.test",pid="%d",`, steady.cmd.Process.Pid)
	briefSel := fmt.Sprintf(`pid="%d"`, brief.cmd.Process.Pid)
	first := 0.0
	for i := 0; i < 50 && first == 0; i++ {
		expo, err := scrape(client, w.addr)
		if err != nil {
			t.Fatal(err)
		}
		first = pwriteValue(expo, steadySel)
		time.Sleep(100 * time.Millisecond)
	}
	// 100 at once, while the brief subject is killed in their midst.
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := scrape(client, w.addr); err != nil {
				errs <- err
			}
		}()
		if i == 50 {
			brief.cmd.Process.Kill()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent scrape: %v", err)
	}
	time.Sleep(time.Second) // several intervals
	expo, err := scrape(client, w.addr)
	if err != nil {
		t.Fatalf("scrape after the storm: %v", err)
	}
	if last := pwriteValue(expo, steadySel); last <= first {
		t.Errorf("steady subject's pwrite64 went %v -> %v: watch stopped counting", first, last)
	}
	if strings.Contains(expo, briefSel) {
		t.Errorf("the exited subject (%s) is still exposed", briefSel)
	}
	if w.cmd.ProcessState != nil {
		t.Fatalf("watch exited: %s", w.stderr.String())
	}
}

func pwriteValue(expo, sel string) float64 {
	for _, line := range strings.Split(expo, "\n") {
		if strings.HasPrefix(line, sel) && strings.Contains(line, `syscall="pwrite64"`) {
			f, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			return f
		}
	}
	return 0
}

// TestDemoPrometheus: demo --prometheus exposes one subject per transfer
// path whose sent bytes grow between scrapes, and reaches the totals of
// demo --json's records.
func TestDemoPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo for ~5 s; skipped with -short")
	}
	probe := "ebpf"
	if os.Geteuid() != 0 {
		probe = "proc"
	}
	bin := buildBinary(t)
	var stdout, stderr lockedBuffer
	cmd := exec.Command(bin, "demo", "--probe", probe, "--paths", "read,sendfile", "--duration", "5s", "--interval", "500ms",
		"--json", "--prometheus", "127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	re := regexp.MustCompile(`metrics at http://([^/]+)/metrics`)
	var addr string
	for i := 0; i < 1000 && addr == ""; i++ {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	if addr == "" {
		t.Fatalf("demo never said where it serves metrics: %s", stderr.String())
	}
	client := &http.Client{Timeout: 5 * time.Second}
	sent := func(expo, path string) float64 {
		for _, line := range strings.Split(expo, "\n") {
			if strings.HasPrefix(line, "copyscope_sent_bytes_total{") && strings.Contains(line, `subject="`+path+`",subject_kind="path"`) {
				f, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
				return f
			}
		}
		return -1
	}
	var first, last string
	for i := 0; i < 40; i++ {
		expo, err := scrape(client, addr)
		if err == nil && sent(expo, "read") > 0 {
			if first == "" {
				first = expo
			}
			last = expo
		}
		time.Sleep(100 * time.Millisecond)
	}
	if first == "" {
		t.Fatalf("no scrape showed the read path sending:\n%s", stderr.String())
	}
	for _, path := range []string{"read", "sendfile"} {
		if a, b := sent(first, path), sent(last, path); !(a > 0 && b > a) {
			t.Errorf("%s: copyscope_sent_bytes_total %v then %v, want growing", path, a, b)
		}
	}
	if !strings.Contains(last, `copyscope_probe_info{cost="exact",estimate="`+strconv.FormatBool(probe == "proc")+`",grouping="path",mode="`+probe+`"} 1`) {
		t.Errorf("probe info missing or wrong for --probe %s", probe)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("demo: %v\n%s", err, stderr.String())
	}
	// The last scrape cannot be ahead of what the JSON records add up to.
	var total float64
	for _, r := range watchJSONAll(t, stdout.String()) {
		if r["subject"] == "read" && r["kind"] == "path" {
			v, _ := r["delivered_bytes"].(float64)
			total += v
		}
	}
	if got := sent(last, "read"); got > total {
		t.Errorf("read: scraped %v sent bytes, more than demo --json's %v in total", got, total)
	}
}
