module github.com/swarmvpn/swarmvpn

go 1.26

require (
	github.com/libp2p/go-yamux/v5 v5.1.0
	github.com/things-go/go-socks5 v0.1.3
	github.com/urfave/cli/v3 v3.14.0
	go.uber.org/goleak v1.3.0
	golang.org/x/sync v0.19.0
)

require github.com/libp2p/go-buffer-pool v0.0.2 // indirect
