package nat

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"
)

const (
	ssdpPort = 1900
	// maxSSDPAnswer bounds one SSDP answer (a UDP datagram; real ones are
	// about 400 bytes).
	maxSSDPAnswer = 2048
	// maxLocation bounds a LOCATION or control URL.
	maxLocation = 512
)

// ssdpTargets are the search targets sent: every IGD answers the first, a
// few IGDv2 only the second.
var ssdpTargets = []string{
	"urn:schemas-upnp-org:device:InternetGatewayDevice:1",
	"urn:schemas-upnp-org:device:InternetGatewayDevice:2",
}

// errBadURL: a URL from the gateway that we refuse to fetch.
var errBadURL = errors.New("refused URL")

// ssdpSearch sends an SSDP M-SEARCH to the gateway itself (unicast, so no
// other LAN host is asked) and returns the first acceptable LOCATION from
// an answer whose source is the gateway. The socket is connected to the
// gateway's SSDP port, so the kernel hands it no datagram from anywhere
// else: not from another LAN host, nor one that a client of the exit
// sends to the exit's own address.
func ssdpSearch(ctx context.Context, gw netip.Addr) (*url.URL, error) {
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(gw, ssdpPort))
	conn, err := net.DialUDP("udp4", nil, to)
	if err != nil {
		return nil, fmt.Errorf("ssdp search: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	for _, st := range ssdpTargets {
		msg := "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: " + st + "\r\n\r\n"
		if _, err := conn.Write([]byte(msg)); err != nil {
			return nil, fmt.Errorf("ssdp search %v: %w", gw, err)
		}
	}
	buf := make([]byte, maxSSDPAnswer+1)
	var lastErr error
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil && lastErr == nil {
				lastErr = ctx.Err()
			}
			if lastErr != nil {
				return nil, fmt.Errorf("ssdp search %v: %w", gw, lastErr)
			}
			return nil, fmt.Errorf("ssdp search %v: no answer: %w", gw, err)
		}
		if from.Addr().Unmap() != gw || from.Port() != ssdpPort {
			continue // only the gateway's answer counts
		}
		loc, err := parseSSDP(buf[:n], gw)
		if err != nil {
			lastErr = err
			continue
		}
		return loc, nil
	}
}

// parseSSDP reads an SSDP search answer and returns its LOCATION, if it
// passes checkGatewayURL.
func parseSSDP(pkt []byte, gw netip.Addr) (*url.URL, error) {
	if len(pkt) > maxSSDPAnswer {
		return nil, fmt.Errorf("ssdp answer: %w (%d bytes)", errTooLarge, len(pkt))
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(pkt)), nil)
	if err != nil {
		return nil, fmt.Errorf("ssdp answer: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ssdp answer: status %d", resp.StatusCode)
	}
	loc, err := checkGatewayURL(resp.Header.Get("Location"), gw)
	if err != nil {
		return nil, fmt.Errorf("ssdp answer: location: %w", err)
	}
	return loc, nil
}

// checkGatewayURL parses a URL given by the gateway and accepts it only if
// it is plain http to the gateway's own address, written as an IP literal,
// on a port that is not zero. Names (which would need a resolver, and could
// resolve anywhere), other hosts, loopback, credentials and other schemes
// are refused: UPnP is spoken to the gateway and nowhere else.
func checkGatewayURL(raw string, gw netip.Addr) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: empty", errBadURL)
	}
	if len(raw) > maxLocation {
		return nil, fmt.Errorf("%w: %d bytes long", errBadURL, len(raw))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadURL, err)
	}
	if u.Scheme != "http" || u.Opaque != "" || u.User != nil {
		return nil, fmt.Errorf("%w: %q is not a plain http URL", errBadURL, raw)
	}
	host, err := netip.ParseAddr(u.Hostname())
	if err != nil || host.Zone() != "" {
		return nil, fmt.Errorf("%w: host of %q is not an IP address", errBadURL, raw)
	}
	if host.Unmap() != gw {
		return nil, fmt.Errorf("%w: %q is not on the gateway %v", errBadURL, raw, gw)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%w: port of %q", errBadURL, raw)
		}
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}
