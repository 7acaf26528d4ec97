package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The uTP workload: a torrent moved between libtorrent sessions over uTP
// only, the way most torrent bytes move. On a path through a proxy the
// leecher's uTP goes through SOCKS5 UDP ASSOCIATE. The sessions are
// python3-libtorrent, driven by utp.py, which is embedded here and written
// to a temporary directory at run time.

//go:embed utp.py
var utpScript []byte

// UTPConfig sets the uTP torrent workload's sizes. The zero value of a
// field means its default.
type UTPConfig struct {
	// Size is the torrent's payload in bytes; default 256 MiB (Quick:
	// 32 MiB).
	Size int64
	// Timeout bounds one transfer; one that has not completed by then is
	// an error in the report. Default 120s.
	Timeout time.Duration
	// Python is the interpreter that has libtorrent; default
	// /usr/bin/python3, which Debian's python3-libtorrent is built for.
	Python string
}

// utpSeeders is how many seeders the leecher downloads from.
const utpSeeders = 2

// Bounds on the uTP workload.
const (
	minUTPSize = 1 << 20
	maxUTPSize = 16 << 30
	// utpReadyTimeout bounds making the torrent and the seeders' check
	// of their data.
	utpReadyTimeout = 2 * time.Minute
	// utpStopGrace is how long a libtorrent process is given to end after
	// its stdin closes before it is killed.
	utpStopGrace = 5 * time.Second
)

func (c UTPConfig) withDefaults(quick bool) UTPConfig {
	if c.Size == 0 {
		c.Size = 256 << 20
		if quick {
			c.Size = 32 << 20
		}
	}
	if c.Timeout == 0 {
		c.Timeout = 120 * time.Second
	}
	if c.Python == "" {
		c.Python = "/usr/bin/python3"
	}
	return c
}

func (c UTPConfig) validate() error {
	if c.Size < minUTPSize || c.Size > maxUTPSize {
		return fmt.Errorf("uTP torrent size %d bytes: want %d MiB to %d GiB", c.Size, minUTPSize>>20, maxUTPSize>>30)
	}
	if c.Timeout <= 0 || c.Timeout > maxRoundTime {
		return fmt.Errorf("uTP transfer timeout %v: want more than 0 and at most %v", c.Timeout, maxRoundTime)
	}
	return nil
}

// utpWorkload measures downloading the torrent from two seeders over uTP
// only. Without libtorrent it is not measured, and the report says how to
// install it.
func (b *Bench) utpWorkload(note func(string, ...any)) workload {
	cfg := b.cfg.UTP
	l := fmt.Sprintf("uTP torrent, %s from %d libtorrent seeders", sizeText(cfg.Size), utpSeeders)
	w := workload{group: WorkUTP, title: l, figs: []figSpec{
		{id: "utp", label: l, unit: "MB/s"},
		{id: "utp_loss", label: "uTP torrent: packets the seeders took as lost", unit: "packets", lower: true, noRatio: true},
		{id: "utp_timeouts", label: "uTP torrent: the seeders' retransmission timeouts", unit: "timeouts", lower: true, noRatio: true},
	}}
	if why := libtorrentMissing(cfg.Python); why != "" {
		w.skip = func(*path) string { return why }
		return w
	}
	note("uTP torrent: uTP only (no TCP, DHT or tracker), the leecher's data checked; MB/s is the payload ÷ the time from the leecher's first connection to a seeder to its last piece verified; losses and timeouts are libtorrent's counts in the seeders during each transfer (each timeout stalls a connection for at least 0.5s)")
	rig := &utpRig{cfg: cfg, targetHost: b.cfg.TargetHost, detail: b.detail}
	w.run = func(ctx context.Context, p *path) ([]float64, error) {
		res, err := rig.round(ctx, p.socks)
		if err == nil && res.senders < utpSeeders {
			note("%s: a round's leecher got data from %d of the %d seeders", p.Name, res.senders, utpSeeders)
		}
		return []float64{res.mbps, res.loss, res.timeouts}, err
	}
	w.close = rig.close
	return w
}

// libtorrentMissing returns why python cannot run the workload, with how
// to fix it; "" when it can.
func libtorrentMissing(python string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "-c", "import libtorrent").CombinedOutput()
	if err == nil {
		return ""
	}
	why := err.Error()
	if line := lastLine(out); line != "" {
		why = line
	}
	return fmt.Sprintf("not measured: %s cannot import libtorrent (%s); install it with: apt-get install python3-libtorrent", python, why)
}

// utpRig is what the rounds share: the payload, its torrent and the
// seeders, made in the first round and stopped by close.
type utpRig struct {
	cfg        UTPConfig
	targetHost string // where a remote exit reaches the seeders; "": loopback
	detail     func(string)

	prepared bool
	err      error // why the rig could not be made
	dir      string
	seed     [32]byte // of the payload's bytes
	torrent  string
	peers    []string // the seeders, HOST:PORT
	seeders  []*pyProc
}

// payloadName is the payload's file name, in the torrent and on disk.
const payloadName = "payload.bin"

// utpResult is what one transfer measured.
type utpResult struct {
	mbps           float64
	senders        int     // seeders that sent data
	loss, timeouts float64 // the seeders' uTP counts during the transfer
}

// round downloads the torrent once through proxy (nil: directly).
func (r *utpRig) round(ctx context.Context, proxy *SOCKS5) (res utpResult, err error) {
	if !r.prepared {
		r.prepared = true
		r.err = r.prepare(ctx)
	}
	if r.err != nil {
		return res, r.err
	}
	for _, s := range r.seeders {
		if ended, why := s.exited(); ended {
			return res, errors.New(why)
		}
	}
	leechDir, err := os.MkdirTemp(r.dir, "leech-")
	if err != nil {
		return res, fmt.Errorf("uTP leecher's directory: %w", err)
	}
	defer os.RemoveAll(leechDir)
	port, err := freeUDPPort("127.0.0.1")
	if err != nil {
		return res, err
	}
	args := []string{"leech", r.torrent, leechDir, "--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		"--timeout", strconv.FormatFloat(r.cfg.Timeout.Seconds(), 'f', 3, 64)}
	for _, p := range r.peers {
		args = append(args, "--peer", p)
	}
	var env []string
	if proxy != nil {
		args = append(args, "--socks", proxy.Addr)
		if proxy.User != "" {
			env = []string{"SOCKS_USER=" + proxy.User, "SOCKS_PASS=" + proxy.Pass}
		}
	}
	loss0, timeouts0, err := r.seederStats(ctx)
	if err != nil {
		return res, err
	}
	leecher, err := r.start("uTP leecher", env, args...)
	if err != nil {
		return res, err
	}
	defer leecher.stop()
	// The script keeps its own time; this bound only keeps a stuck
	// interpreter from holding the run.
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout+15*time.Second)
	defer cancel()
	total, secs, senders, err := r.follow(ctx, leecher)
	if err != nil {
		return res, err
	}
	loss1, timeouts1, err := r.seederStats(ctx)
	if err != nil {
		return res, err
	}
	if err := r.verify(filepath.Join(leechDir, payloadName)); err != nil {
		return res, err
	}
	return utpResult{mbps: float64(total) / secs / 1e6, senders: senders,
		loss: float64(loss1 - loss0), timeouts: float64(timeouts1 - timeouts0)}, nil
}

// follow reads the leecher's lines until it is done, showing its progress,
// and returns the bytes it downloaded, the seconds that took and how many
// peers sent data.
func (r *utpRig) follow(ctx context.Context, leecher *pyProc) (total int64, secs float64, senders int, err error) {
	started := time.Now()
	for {
		select {
		case line, ok := <-leecher.lines:
			if !ok {
				return 0, 0, 0, fmt.Errorf("the uTP leecher ended before the download was complete%s", leecher.output())
			}
			f := strings.Fields(line)
			switch {
			case len(f) == 3 && f[0] == "progress":
				done, _ := strconv.ParseInt(f[1], 10, 64)
				all, _ := strconv.ParseInt(f[2], 10, 64)
				if all > 0 {
					r.detail(fmt.Sprintf("%d%%, %.1f MB/s", done*100/all, float64(done)/time.Since(started).Seconds()/1e6))
				}
			case len(f) == 4 && f[0] == "done":
				total, err1 := strconv.ParseInt(f[1], 10, 64)
				secs, err2 := strconv.ParseFloat(f[2], 64)
				senders, err3 := strconv.Atoi(f[3])
				// The time is the script's own: finite, above zero, and
				// no longer than the leecher has run (its clock started
				// after this one).
				if err1 != nil || err2 != nil || err3 != nil || total != r.cfg.Size || senders < 0 ||
					!(secs > 0 && secs <= time.Since(started).Seconds()+1) {
					return 0, 0, 0, fmt.Errorf("the uTP leecher says %q; want %d bytes, their time and the peers", line, r.cfg.Size)
				}
				return total, secs, senders, nil
			case len(f) == 3 && f[0] == "timeout":
				return 0, 0, 0, fmt.Errorf("the uTP download was not complete after %v: %s of %s bytes%s",
					r.cfg.Timeout, f[1], f[2], leecher.output())
			}
		case <-ctx.Done():
			if context.Cause(ctx) == context.DeadlineExceeded {
				return 0, 0, 0, fmt.Errorf("the uTP leecher did not report within %v%s", r.cfg.Timeout, leecher.output())
			}
			return 0, 0, 0, context.Cause(ctx)
		}
	}
}

// seederStats returns the sums of the seeders' uTP counters: packets
// taken as lost, and retransmission timeouts.
func (r *utpRig) seederStats(ctx context.Context) (loss, timeouts int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, s := range r.seeders {
		s.drain()
		if _, err := io.WriteString(s.stdin, "stats\n"); err != nil {
			return 0, 0, fmt.Errorf("ask the %s for its counters: %w", s.role, err)
		}
		reply, err := s.expect(ctx, "stats")
		if err != nil {
			return 0, 0, err
		}
		var l, t int64
		if _, err := fmt.Sscan(reply, &l, &t); err != nil {
			return 0, 0, fmt.Errorf("the %s's counters %q: %w", s.role, reply, err)
		}
		loss, timeouts = loss+l, timeouts+t
	}
	return loss, timeouts, nil
}

// prepare writes the script and the payload, makes the torrent and starts
// the seeders.
func (r *utpRig) prepare(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "swarmvpn-bench-utp-")
	if err != nil {
		return fmt.Errorf("uTP workload's directory: %w", err)
	}
	r.dir = dir
	if err := os.WriteFile(filepath.Join(dir, "utp.py"), utpScript, 0o644); err != nil {
		return fmt.Errorf("uTP workload's script: %w", err)
	}
	seedDir := filepath.Join(dir, "seed")
	if err := os.Mkdir(seedDir, 0o755); err != nil {
		return fmt.Errorf("uTP seeders' directory: %w", err)
	}
	rand.Read(r.seed[:])
	r.detail(fmt.Sprintf("writing the %s payload", sizeText(r.cfg.Size)))
	if err := writePayload(filepath.Join(seedDir, payloadName), r.seed, r.cfg.Size); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, utpReadyTimeout)
	defer cancel()
	r.detail("making the torrent")
	r.torrent = filepath.Join(dir, "payload.torrent")
	maker, err := r.start("torrent maker", nil, "make", filepath.Join(seedDir, payloadName), r.torrent)
	if err != nil {
		return err
	}
	_, err = maker.expect(ctx, "made")
	maker.stop()
	if err != nil {
		return err
	}

	listen, advertise := "127.0.0.1", "127.0.0.1"
	if r.targetHost != "" {
		listen, advertise = "0.0.0.0", r.targetHost
		if strings.Contains(r.targetHost, ":") {
			listen = "::"
		}
	}
	r.detail("the seeders check their data")
	for i := range utpSeeders {
		port, err := freeUDPPort(listen)
		if err != nil {
			return err
		}
		s, err := r.start(fmt.Sprintf("uTP seeder %d", i+1), nil, "seed", r.torrent, seedDir,
			"--listen", net.JoinHostPort(listen, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		r.seeders = append(r.seeders, s)
	}
	for _, s := range r.seeders {
		// libtorrent listens on another port when the one it was given
		// has been taken since: the seeder says which.
		port, err := s.expect(ctx, "ready")
		if err != nil {
			return err
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("the %s says it listens on port %q", s.role, port)
		}
		r.peers = append(r.peers, net.JoinHostPort(advertise, port))
	}
	return nil
}

// close stops the seeders and removes the files. Idempotent.
func (r *utpRig) close() {
	for _, s := range r.seeders {
		s.stop()
	}
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
}

// verify checks that file holds the payload, byte for byte.
func (r *utpRig) verify(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("the uTP leecher's data: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Size() != r.cfg.Size {
		if err == nil {
			err = fmt.Errorf("%d bytes, want %d", fi.Size(), r.cfg.Size)
		}
		return fmt.Errorf("the uTP leecher's data: %w", err)
	}
	want := mrand.NewChaCha8(r.seed)
	a, b := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); off < r.cfg.Size; off += int64(len(a)) {
		n := min(int64(len(a)), r.cfg.Size-off)
		if _, err := io.ReadFull(f, a[:n]); err != nil {
			return fmt.Errorf("the uTP leecher's data: %w", err)
		}
		want.Read(b[:n])
		if !bytes.Equal(a[:n], b[:n]) {
			return fmt.Errorf("the uTP leecher's data differs from the payload in the MiB at offset %d", off)
		}
	}
	return nil
}

// writePayload writes size bytes of the ChaCha8 stream of seed to file.
func writePayload(file string, seed [32]byte, size int64) error {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("uTP payload: %w", err)
	}
	src := mrand.NewChaCha8(seed)
	buf := make([]byte, 1<<20)
	for left := size; left > 0 && err == nil; left -= int64(len(buf)) {
		buf = buf[:min(int64(len(buf)), left)]
		src.Read(buf)
		_, err = f.Write(buf)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("uTP payload: %w", err)
	}
	return nil
}

// freeUDPPort returns a port on host that was free for both UDP and TCP a
// moment ago: libtorrent listens on both with the same number.
func freeUDPPort(host string) (int, error) {
	var last error
	for range 20 {
		u, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			return 0, fmt.Errorf("a free UDP port: %w", err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		u.Close()
		if err == nil {
			ln.Close()
			return port, nil
		}
		last = err
	}
	return 0, fmt.Errorf("a free port for UDP and TCP: %w", last)
}

// sizeText writes a size in bytes as "256 MiB".
func sizeText(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
