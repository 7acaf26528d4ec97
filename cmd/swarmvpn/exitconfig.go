package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/swarmvpn/swarmvpn/exitnet/exit"
	"github.com/swarmvpn/swarmvpn/exitnet/policy"
	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/portfwd"
	"github.com/urfave/cli/v3"
)

// exitConfig checks the exit's flags and builds its config: the policy, the
// allow-list, the limits, the identity (created on first run) and the
// forwarded port leases.
func exitConfig(cmd *cli.Command, log *slog.Logger) (exit.Config, *allowList, error) {
	for _, name := range []string{"max-clients", "max-flows-per-client", "max-udp-per-client", "forward-per-client",
		"forward-new-per-hour", "max-inbound-per-client", "inbound-rate-per-addr", "max-handshakes", "max-handshakes-per-source"} {
		if n := cmd.Int(name); n < 1 {
			return exit.Config{}, nil, fmt.Errorf("--%s %d: want at least 1", name, n)
		}
	}
	for _, name := range []string{"dial-timeout", "udp-idle", "half-open-timeout", "forward-reservation"} {
		if d := cmd.Duration(name); d <= 0 {
			return exit.Config{}, nil, fmt.Errorf("--%s %v: want a duration above zero, such as 30s or 5m", name, d)
		}
	}
	if err := checkNATMode(cmd); err != nil {
		return exit.Config{}, nil, err
	}
	pol := &policy.Policy{AllowPrivate: cmd.Bool("allow-private")}
	for _, s := range cmd.StringSlice("rule") {
		r, err := policy.ParseRule(s)
		if err != nil {
			return exit.Config{}, nil, fmt.Errorf("--rule: %w", err)
		}
		pol.Rules = append(pol.Rules, r)
	}
	allowed := &allowList{static: map[link.PeerID]bool{}, file: cmd.String("allow-clients-file")}
	for _, s := range cmd.StringSlice("allow-client") {
		id, err := link.ParsePeerID(s)
		if err != nil {
			return exit.Config{}, nil, fmt.Errorf("--allow-client: %w (a client's owner prints its ID with 'swarmvpn id')", err)
		}
		allowed.static[id] = true
	}
	var allow func(link.PeerID) bool
	if allowed.active() {
		var err error
		if allow, allowed.count, err = allowed.load(); err != nil {
			return exit.Config{}, nil, err
		}
	}
	rateLimit, err := parseRate(cmd.String("rate-per-client"))
	if err != nil {
		return exit.Config{}, nil, fmt.Errorf("--rate-per-client: %w: want bytes per second such as 500k, 10M or 2MiB, or 0 for no limit", err)
	}
	maxBuffer, err := parseBytes(cmd.String("max-buffer-per-client"))
	if err != nil || maxBuffer < 1<<20 {
		return exit.Config{}, nil, fmt.Errorf("--max-buffer-per-client %q: want an amount of at least 1MiB, such as 64MiB", cmd.String("max-buffer-per-client"))
	}
	var known []link.ExitAddr
	for _, s := range cmd.StringSlice("known-exit") {
		k, err := link.ParseExitAddr(s)
		if err != nil {
			return exit.Config{}, nil, fmt.Errorf("--known-exit: %w", err)
		}
		known = append(known, k)
	}
	id, err := identity(cmd, "exit", log)
	if err != nil {
		return exit.Config{}, nil, err
	}
	ports, err := forwardLeases(cmd)
	if err != nil {
		return exit.Config{}, nil, err
	}
	cert, err := tlsCertificate(cmd.String("tls-cert"), cmd.String("tls-key"))
	if err != nil {
		return exit.Config{}, nil, err
	}
	cfg := exit.Config{
		Link:        link.Config{Identity: id, Log: log, Certificate: cert},
		Fallback:    cmd.String("fallback"),
		Policy:      pol,
		Allow:       allow,
		DialTimeout: cmd.Duration("dial-timeout"),
		Ports:       ports,
		Version:     version,

		MaxClients:          int(cmd.Int("max-clients")),
		MaxStreamsPerClient: int(cmd.Int("max-flows-per-client")),
		MaxUDPPerClient:     int(cmd.Int("max-udp-per-client")),
		UDPIdleTimeout:      cmd.Duration("udp-idle"),
		RatePerClient:       rateLimit,
		MaxBufferPerClient:  maxBuffer,
		HalfOpenTimeout:     cmd.Duration("half-open-timeout"),

		MaxInboundPerClient:    int(cmd.Int("max-inbound-per-client")),
		InboundRatePerAddr:     int(cmd.Int("inbound-rate-per-addr")),
		MaxHandshakes:          int(cmd.Int("max-handshakes")),
		MaxHandshakesPerSource: int(cmd.Int("max-handshakes-per-source")),
		MDNS:                   cmd.Bool("mdns"),
		KnownExits:             known,
		Log:                    log,
	}
	return cfg, allowed, nil
}

// forwardLeases returns the port lender --forward-ports asks for, with its
// leases kept in the state dir, or nil (as an interface) for none.
func forwardLeases(cmd *cli.Command) (exit.PortLender, error) {
	spec := cmd.String("forward-ports")
	if spec == "" {
		return nil, nil
	}
	r, err := policy.ParsePortRange(spec)
	if err != nil || r.Lo == 0 {
		return nil, fmt.Errorf("--forward-ports %q: want a range such as 40000-40999", spec)
	}
	if r.Lo < 1024 {
		return nil, fmt.Errorf("--forward-ports %q: ports below 1024 need privileges and clash with services; use a range above 1023", spec)
	}
	dir, err := stateDir(cmd)
	if err != nil {
		return nil, err
	}
	leases, err := portfwd.NewLeases(portfwd.LeasesConfig{Lo: r.Lo, Hi: r.Hi, PerClient: int(cmd.Int("forward-per-client")),
		Reservation: cmd.Duration("forward-reservation"), NewPerSourceHour: int(cmd.Int("forward-new-per-hour")),
		File: filepath.Join(dir, "forward-leases.json")})
	if err != nil {
		return nil, err
	}
	return leases, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// tlsCertificate loads --tls-cert and --tls-key, which go together; none
// means the exit's self-signed certificate.
func tlsCertificate(certFile, keyFile string) (*tls.Certificate, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("--tls-cert and --tls-key go together: give both (PEM files, e.g. from Let's Encrypt) or neither")
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s, --tls-key %s: %w", certFile, keyFile, err)
	}
	return &c, nil
}
