package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
)

// maxMistakenHeader bounds what is read of an HTTP request sent to the
// SOCKS5 port before it is answered.
const maxMistakenHeader = 8 << 10

// notSOCKS5 answers a client whose first byte is not SOCKS5's version. An
// HTTP request (it starts with a method's capital letter) gets a 400 that
// says which port is which; anything else is closed at once.
func (s *SOCKS) notSOCKS5(c net.Conn, first byte) {
	if first < 'A' || first > 'Z' {
		s.log.Debug("socks5: not a SOCKS5 client; closed", "version", first)
		return
	}
	// Read the request header, so that closing with it unread does not
	// reset the connection before the client reads the answer.
	br := bufio.NewReader(io.LimitReader(c, maxMistakenHeader))
	for {
		line, err := br.ReadString('\n')
		if err != nil || strings.TrimRight(line, "\r\n") == "" {
			break
		}
	}
	body := fmt.Sprintf("This is swarmvpn's SOCKS5 port, not an HTTP proxy: use it as a SOCKS5 proxy (e.g. curl --socks5-hostname %s).", c.LocalAddr())
	if s.httpAddr != "" {
		body += fmt.Sprintf(" The HTTP proxy is at %s (e.g. curl --proxy http://%s).", s.httpAddr, s.httpAddr)
	} else {
		body += " No HTTP proxy is running."
	}
	body += "\n"
	fmt.Fprintf(c, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	s.log.Debug("socks5: an HTTP request on the SOCKS5 port; answered 400")
}
