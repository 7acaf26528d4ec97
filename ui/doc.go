// Package ui serves the local status page of a running client or exit: one
// HTML page with its stylesheet and script embedded in the binary (no CDN,
// no build step), the snapshot that 'swarmvpn status --json' prints at
// /api/status, and the same snapshot pushed live over server-sent events at
// /api/events, with the byte rates of the last minutes for the chart.
//
// ui knows nothing of the client: it shows any Snapshot a function returns,
// so cmd/swarmvpn hands it client.Report for 'connect --ui'. For 'exit --ui'
// it builds the exit's snapshot itself (ExitView) from exit.Stats.
//
// A page that others could reach needs a password (CheckExposure), as the
// SOCKS5 proxy does. Without one, only requests naming this machine
// (an IP address or localhost) in their Host header are answered, so that a
// web site cannot read the page through a DNS name rebound to 127.0.0.1.
//
// ui imports exitnet/exit (for its Stats) and internal/listener only; only
// cmd/swarmvpn and tests import it.
package ui
