#!/usr/bin/env bash
# swarmvpn end-to-end suite: three network namespaces (cli, exit, inet), real
# torrent clients (libtorrent, qBittorrent), opentracker. Run as root:
#   bash e2e/run.sh [SCENARIO...]     (default: all; names: utp qbt http leak connectable qbtsync seed seedudp)
# Prints one line per scenario and, last, "N passed, M failed".
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
E2E=$ROOT/e2e
LTPEER=$ROOT/internal/testnet/testdata/ltpeer.py  # the libtorrent peer the Go tests use too
PY=/usr/bin/python3 # python3-libtorrent imports only here
export SWARMVPN_MDNS=false
export SWARMVPN_NAT=off
DEADLINE_DL=${E2E_DL_TIMEOUT:-120}
LOGLEVEL=${E2E_LOG_LEVEL:-info}
RESUME_TIMEOUT=${E2E_RESUME_TIMEOUT:-240}

ID=$$
NC=svc$ID NX=svx$ID NI=svi$ID
WORK=$(mktemp -d /tmp/swarmvpn-e2e.XXXXXX)
chmod 755 "$WORK" # opentracker runs as nobody and chroots below it
PIDS=$WORK/pids
: >"$PIDS"
FAILED=0 PASSED=0 SPID=
SUMMARY=()

log() { echo "[$(date +%T)] $*" >&2; }

# ---------------------------------------------------------------- packages
need_pkgs() {
	local missing=()
	command -v qbittorrent-nox >/dev/null || missing+=(qbittorrent-nox)
	$PY -c 'import libtorrent' 2>/dev/null || missing+=(python3-libtorrent)
	command -v opentracker >/dev/null || missing+=(opentracker)
	command -v mktorrent >/dev/null || missing+=(mktorrent)
	command -v ip >/dev/null || missing+=(iproute2)
	command -v nft >/dev/null || missing+=(nftables)
	command -v curl >/dev/null || missing+=(curl)
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends "${missing[@]}" >"$WORK/apt.log" 2>&1 ||
		{ apt-get update >>"$WORK/apt.log" 2>&1 &&
			apt-get install -y --no-install-recommends "${missing[@]}" >>"$WORK/apt.log" 2>&1; } ||
		{ cat "$WORK/apt.log"; return 1; }
}

# ---------------------------------------------------------------- processes
# bg NAME NS CMD... : start CMD in namespace NS, log to $WORK/logs/NAME.log,
# stdin from a fifo we hold open (ltpeer-style peers exit when it closes).
mkdir -p "$WORK/logs"
mkfifo "$WORK/hold"
exec 9<>"$WORK/hold"
bg() {
	local name=$1 ns=$2
	shift 2
	# Empty the log here, not only in the background job's redirection: a
	# process started again under the same name must not be judged by its
	# predecessor's lines before the job has truncated them.
	: >"$WORK/logs/$name.log"
	ip netns exec "$ns" "$@" <"$WORK/hold" >"$WORK/logs/$name.log" 2>&1 9>&- &
	local pid=$!
	echo "$pid" >>"$PIDS"
	echo "$pid" >"$WORK/$name.pid"
	CURLOGS+=("$WORK/logs/$name.log")
}
pidof_() { cat "$WORK/$1.pid"; }
stop() { # stop NAME [SIGNAL]
	local pid
	pid=$(pidof_ "$1")
	kill -"${2:-TERM}" "$pid" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
stop_all() {
	local pid
	while read -r pid; do kill -TERM "$pid" 2>/dev/null || true; done <"$PIDS"
	sleep 0.5
	while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$PIDS"
	: >"$PIDS"
	wait 2>/dev/null || true
}

# wait_for SECONDS WHAT CMD... : poll CMD until it succeeds, bounded.
wait_for() {
	local t=$1 what=$2 end
	shift 2
	end=$((SECONDS + t))
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || fail "timed out after ${t}s waiting for $what"
		sleep 0.2
	done
}
fail() { echo "FAIL: $*" >&2; exit 1; }

# ---------------------------------------------------------------- topology
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "${SPID:-}" ]; then kill -TERM "$SPID" 2>/dev/null || true; fi
	stop_all 2>/dev/null || true
	exec 9>&- || true
	for n in "$NC" "$NX" "$NI"; do ip netns del "$n" 2>/dev/null || true; done
	if [ "$FAILED" -eq 0 ] && [ $rc -eq 0 ]; then
		rm -rf "$WORK"
	else
		echo "work dir kept: $WORK" >&2
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

topology() {
	for n in "$NC" "$NX" "$NI"; do ip netns add "$n"; ip -n "$n" link set lo up; done
	# cli (10.200.3.2) -- (10.200.3.1) exit (10.200.4.1) -- (10.200.4.2) inet
	ip link add "vc$ID" netns "$NC" type veth peer name "vx$ID" netns "$NX"
	ip link add "vy$ID" netns "$NX" type veth peer name "vi$ID" netns "$NI"
	# a direct cli <-> inet link for the leak test: cli 10.200.5.2, inet 10.200.5.1
	ip link add "vd$ID" netns "$NC" type veth peer name "vj$ID" netns "$NI"
	for x in "$NC vd$ID" "$NI vj$ID"; do
		set -- $x
		ip netns exec "$1" sysctl -q -w "net.ipv6.conf.$2.disable_ipv6=1"
	done
	ip -n "$NC" addr add 10.200.3.2/24 dev "vc$ID"
	ip -n "$NX" addr add 10.200.3.1/24 dev "vx$ID"
	ip -n "$NX" addr add 10.200.4.1/24 dev "vy$ID"
	ip -n "$NI" addr add 10.200.4.2/24 dev "vi$ID"
	ip -n "$NC" addr add 10.200.5.2/24 dev "vd$ID"
	ip -n "$NI" addr add 10.200.5.1/24 dev "vj$ID"
	for x in "$NC vc$ID" "$NX vx$ID" "$NX vy$ID" "$NI vi$ID" "$NC vd$ID" "$NI vj$ID"; do
		set -- $x
		ip -n "$1" link set "$2" up
	done
	ip netns exec "$NX" sysctl -q -w net.ipv4.ip_forward=0
	# count every packet (IPv4 and IPv6; ARP is not in the inet family) that
	# arrives in inet over the direct link addressed to inet itself. Link-local
	# multicast is not counted: qBittorrent sends UPnP SSDP (239.255.255.250:1900)
	# on every interface at start-up, before the WebUI API can switch UPnP off.
	ip netns exec "$NI" nft -f - <<EOF
table inet e2e {
	counter direct {}
	set seen4 { type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags dynamic; size 4096; }
	chain pre {
		type filter hook prerouting priority -300;
		iifname "vj$ID" fib daddr type local counter name direct
		iifname "vj$ID" fib daddr type local meta l4proto { tcp, udp } update @seen4 { ip saddr . ip daddr . meta l4proto . th dport }
	}
}
EOF
}
leak_packets() { ip netns exec "$NI" nft list counter inet e2e direct | awk '/packets/ {print $2}'; }
leak_reset() { ip netns exec "$NI" nft reset counter inet e2e direct >/dev/null; ip netns exec "$NI" nft flush set inet e2e seen4; }
leak_check() { # leak_check WHEN
	local n
	n=$(leak_packets)
	[ "$n" -eq 0 ] && return 0
	ip netns exec "$NI" nft list set inet e2e seen4 >&2
	fail "$n packets arrived in inet over the direct link $1"
}

# ---------------------------------------------------------------- swarmvpn
# start_exit NAME [ARGS...]: exit in $NX on 10.200.3.1:7843, state in $WORK/NAME
start_exit() {
	local name=$1
	shift
	mkdir -p "$WORK/$name"
	bg "$name" "$NX" "$WORK/swarmvpn" exit --state-dir "$WORK/$name" --listen 10.200.3.1:7843 \
		--public-addr 10.200.3.1 --allow-private --mdns=false --dht=false --log-level "$LOGLEVEL" "$@"
	wait_for 15 "exit $name to print its address" grep -q '@' "$WORK/logs/$name.log"
	EXIT_ADDR=$(grep -m1 -oE '[A-Za-z0-9]+@10\.200\.3\.1:7843' "$WORK/logs/$name.log")
	[ -n "$EXIT_ADDR" ] || fail "no exit address in $WORK/logs/$name.log"
}
link_up() { "$WORK/swarmvpn" status --json --state-dir "$1" | grep -q '"link": *"up"'; }
# start_client NAME [ARGS...]: client in $NC, SOCKS5 127.0.0.1:1080, HTTP 127.0.0.1:8118
start_client() {
	local name=$1
	shift
	mkdir -p "$WORK/$name"
	bg "$name" "$NC" "$WORK/swarmvpn" connect --state-dir "$WORK/$name" --exit "$EXIT_ADDR" \
		--socks 127.0.0.1:1080 --http 127.0.0.1:8118 --mdns=false --dht=false --log-level "$LOGLEVEL" "$@"
	wait_for 20 "client $name link up" ip netns exec "$NC" "$WORK/swarmvpn" status --json --state-dir "$WORK/$name"
	wait_for 20 "client $name link up" client_up "$name"
}
client_up() { ip netns exec "$NC" "$WORK/swarmvpn" status --json --state-dir "$WORK/$1" | grep -q '"link": *"up"'; }

# seeder_saw_only_exit LOG: the seeder saw at least one peer, all from 10.200.4.1
seeder_saw_only_exit() {
	local peers
	# (10.200.4.2 is the seeder itself: the tracker hands it its own address)
	peers=$(awk '$1 == "peer" {split($2, a, ":"); if (a[1] != "10.200.4.2") print a[1]}' "$1" | sort -u)
	[ -n "$peers" ] || fail "the seeder saw no peer"
	[ "$peers" = "10.200.4.1" ] || fail "the seeder saw peers other than the exit: $(echo $peers)"
}

mkfile() { head -c "$2" /dev/urandom >"$1"; }

# ---------------------------------------------------------------- qBittorrent
QURL=http://127.0.0.1:8080
qbt() { ip netns exec "$NC" "$PY" "$E2E/qbt.py" "$QURL" "$@"; }
start_qbt() { # start_qbt NAME
	local prof=$WORK/$1
	mkdir -p "$prof/qBittorrent/config"
	printf '[LegalNotice]\nAccepted=true\n' >"$prof/qBittorrent/config/qBittorrent.conf"
	bg "$1" "$NC" qbittorrent-nox --profile="$prof" --webui-port=8080
	wait_for 30 "qBittorrent WebUI" qbt ready
}
QPREFS='{"proxy_type":2,"proxy_ip":"127.0.0.1","proxy_port":1080,"proxy_peer_connections":true,"proxy_hostname_lookup":true,"listen_port":6881,"random_port":false,"dht":false,"lsd":false,"upnp":false}'
qbt_done() { qbt progress "$1" | awk '{exit !($1 == 1)}'; }
qbt_at_least() { qbt progress "$1" | awk -v m="$2" '{exit !($1 >= m)}'; }
qbt_progress() { qbt progress "$1" | awk '{print $1}'; }

# tracker_and_seeder NAME SIZE [SEEDER ARGS...]: opentracker + libtorrent seeder in inet
# sets TORRENT, DATA, HASH
tracker_and_seeder() {
	local name=$1 size=$2 d=$WORK/$1
	shift 2
	mkdir -p "$d/tracker" "$d/seed"
	mkfile "$d/seed/payload.bin" "$size"
	mktorrent -a http://10.200.4.2:6969/announce -a udp://10.200.4.2:6969/announce -l 18 \
		-o "$d/t.torrent" "$d/seed/payload.bin" >/dev/null
	TORRENT=$d/t.torrent DATA=$d/seed/payload.bin
	HASH=$($PY "$LTPEER" infohash "$TORRENT")
	echo "$HASH" >"$d/tracker/whitelist.txt"
	chmod -R a+rX "$d/tracker"
	bg "$name-tracker" "$NI" opentracker -i 10.200.4.2 -p 6969 -P 6969 -d "$d/tracker" -w whitelist.txt -u nobody
	wait_for 10 "opentracker" ip netns exec "$NI" bash -c 'exec 3<>/dev/tcp/10.200.4.2/6969'
	bg "$name-seeder" "$NI" "$PY" "$LTPEER" seed "$TORRENT" "$d/seed" --listen 10.200.4.2:6881 "$@"
	wait_for 15 "seeder ready" grep -q '^ready' "$WORK/logs/$name-seeder.log"
}

# ================================================================ scenarios
s_utp() {
	local d=$WORK/utp
	mkdir -p "$d/seed" "$d/leech"
	mkfile "$d/seed/payload.bin" $((8 << 20))
	$PY "$LTPEER" make "$d/seed/payload.bin" "$d/t.torrent"
	bg utp-seeder "$NI" "$PY" "$LTPEER" seed "$d/t.torrent" "$d/seed" --listen 10.200.4.2:6881 --utp-only
	wait_for 15 "seeder ready" grep -q '^ready' "$WORK/logs/utp-seeder.log"
	start_exit utp-exit
	start_client utp-client --forward off
	bg utp-leecher "$NC" "$PY" "$LTPEER" leech "$d/t.torrent" "$d/leech" --listen 10.200.3.2:6881 \
		--peer 10.200.4.2:6881 --socks 127.0.0.1:1080 --utp-only --timeout "$DEADLINE_DL"
	wait_for $((DEADLINE_DL + 5)) "uTP download" grep -q '^done' "$WORK/logs/utp-leecher.log"
	cmp "$d/seed/payload.bin" "$d/leech/payload.bin" || fail "downloaded file differs"
	seeder_saw_only_exit "$WORK/logs/utp-seeder.log"
}

s_qbt() {
	tracker_and_seeder qbt $((16 << 20))
	start_exit qbt-exit
	start_client qbt-client --forward off
	start_qbt qbt-qbt
	qbt setprefs "$QPREFS"
	mkdir -p "$WORK/qbt/dl"
	qbt add "$TORRENT" "$WORK/qbt/dl"
	wait_for "$DEADLINE_DL" "qBittorrent download" qbt_done "$HASH"
	cmp "$DATA" "$WORK/qbt/dl/payload.bin" || fail "downloaded file differs"
	seeder_saw_only_exit "$WORK/logs/qbt-seeder.log"
}

s_http() {
	local d=$WORK/http
	mkdir -p "$d/www"
	mkfile "$d/www/f.bin" $((1 << 20))
	bg http-server "$NI" "$PY" -m http.server --bind 10.200.4.2 --directory "$d/www" 8000
	wait_for 10 "http server" ip netns exec "$NI" bash -c 'exec 3<>/dev/tcp/10.200.4.2/8000'
	start_exit http-exit
	start_client http-client --forward off
	ip netns exec "$NC" curl -fsS --max-time 30 --proxy http://127.0.0.1:8118 \
		-o "$d/plain.bin" http://10.200.4.2:8000/f.bin || fail "plain HTTP proxy request failed"
	cmp "$d/www/f.bin" "$d/plain.bin" || fail "plain HTTP proxy: bytes differ"
	ip netns exec "$NC" curl -fsS --max-time 30 --proxy http://127.0.0.1:8118 --proxytunnel \
		-o "$d/connect.bin" http://10.200.4.2:8000/f.bin || fail "HTTP CONNECT request failed"
	cmp "$d/www/f.bin" "$d/connect.bin" || fail "HTTP CONNECT: bytes differ"
	# and the server saw only the exit
	if grep -v '^10\.200\.4\.1 ' "$WORK/logs/http-server.log" | grep -q '"GET'; then
		fail "the HTTP server saw a client other than the exit"
	fi
}

s_leak() {
	# cli can now reach inet directly; anything arriving over that link is a leak
	ip -n "$NC" route add 10.200.4.0/24 via 10.200.5.1 dev "vd$ID"
	# positive control: the counter does see direct traffic
	leak_reset
	ip netns exec "$NC" bash -c 'exec 3<>/dev/tcp/10.200.4.2/6969' 2>/dev/null || true
	[ "$(leak_packets)" -gt 0 ] || fail "control: the direct-link counter saw nothing"
	tracker_and_seeder leak $((16 << 20)) --rate $((1 << 20))
	leak_reset
	start_exit leak-exit
	start_client leak-client --forward off
	start_qbt leak-qbt
	qbt setprefs "$QPREFS"
	mkdir -p "$WORK/leak/dl"
	qbt add "$TORRENT" "$WORK/leak/dl"
	wait_for 60 "download to pass 20%" qbt_at_least "$HASH" 0.2
	leak_check "during the download"
	local t0=$SECONDS
	stop leak-exit KILL
	sleep 2
	local p1 p2
	p1=$(qbt_progress "$HASH")
	sleep 6
	p2=$(qbt_progress "$HASH")
	[ "$p1" = "$p2" ] || fail "download went on without the exit ($p1 -> $p2)"
	awk -v p="$p2" 'BEGIN{exit !(p < 1)}' || fail "download finished before the exit was killed"
	leak_check "with the exit down"
	log "leak: exit killed at progress $p1, stalled; restarting it"
	start_exit leak-exit
	wait_for "$RESUME_TIMEOUT" "download to resume and complete (progress when the exit came back: $(qbt_progress "$HASH"))" qbt_done "$HASH"
	log "leak: resumed and completed $((SECONDS - t0))s after the exit was killed"
	cmp "$DATA" "$WORK/leak/dl/payload.bin" || fail "downloaded file differs"
	leak_check "after the download"
	seeder_saw_only_exit "$WORK/logs/leak-seeder.log"
}

s_connectable() {
	local d=$WORK/conn port
	mkdir -p "$d/seed" "$d/leech"
	mkdir -p "$d/tracker"
	mkfile "$d/seed/payload.bin" $((8 << 20))
	# The seeder announces to a UDP tracker through its association: until a
	# proxied client has sent one datagram, the client does not know which
	# local UDP port to deliver incoming datagrams to (they are dropped as
	# drop_no_client_port), and a real seeder announces anyway. The leecher
	# does not use the tracker: it knows only exit-address:forwarded-port.
	mktorrent -a udp://10.200.4.2:6969/announce -l 18 -o "$d/t.torrent" "$d/seed/payload.bin" >/dev/null
	$PY "$LTPEER" infohash "$d/t.torrent" >"$d/tracker/whitelist.txt"
	chmod -R a+rX "$d/tracker"
	bg connectable-tracker "$NI" opentracker -i 10.200.4.2 -p 6969 -P 6969 -d "$d/tracker" -w whitelist.txt -u nobody
	wait_for 10 "opentracker" ip netns exec "$NI" bash -c 'exec 3<>/dev/tcp/10.200.4.2/6969'
	start_exit connectable-exit --forward-ports 40000-40099
	start_client connectable-client --forward auto --port-file "$d/port"
	wait_for 15 "forwarded port" test -s "$d/port"
	port=$(tr -dc 0-9 <"$d/port")
	[ "$port" -ge 40000 ] && [ "$port" -le 40099 ] || fail "forwarded port $port outside 40000-40099"
	bg connectable-seeder "$NC" "$PY" "$LTPEER" seed "$d/t.torrent" "$d/seed" --listen "0.0.0.0:$port" \
		--socks 127.0.0.1:1080
	wait_for 15 "seeder ready" grep -q '^ready' "$WORK/logs/connectable-seeder.log"
	bg connectable-leecher "$NI" "$PY" "$LTPEER" leech "$d/t.torrent" "$d/leech" --listen 10.200.4.2:6882 \
		--peer "10.200.4.1:$port" --utp-only --timeout "$DEADLINE_DL"
	wait_for $((DEADLINE_DL + 5)) "download from the forwarded port" grep -q '^done' "$WORK/logs/connectable-leecher.log"
	cmp "$d/seed/payload.bin" "$d/leech/payload.bin" || fail "downloaded file differs"
}

qbt_port_is() { [ "$(qbt pref listen_port)" = "$1" ]; }
s_qbtsync() {
	local d=$WORK/sync port rc
	mkdir -p "$d"
	start_exit qbtsync-exit --forward-ports 40000-40099
	start_qbt qbtsync-qbt
	# a fresh qBittorrent leaks: doctor says so
	rc=0
	ip netns exec "$NC" "$WORK/swarmvpn" doctor --qbittorrent "$QURL" --qbittorrent-user admin \
		--qbittorrent-pass adminadmin >"$WORK/logs/qbtsync-doctor1.log" 2>&1 || rc=$?
	CURLOGS+=("$WORK/logs/qbtsync-doctor1.log")
	[ $rc -eq 1 ] || fail "doctor on a fresh qBittorrent: exit status $rc, want 1"
	rc=0
	ip netns exec "$NC" "$WORK/swarmvpn" doctor --qbittorrent "$QURL" --qbittorrent-user admin \
		--qbittorrent-pass adminadmin --fix >"$WORK/logs/qbtsync-doctor2.log" 2>&1 || rc=$?
	CURLOGS+=("$WORK/logs/qbtsync-doctor2.log")
	[ $rc -eq 0 ] || fail "doctor --fix: exit status $rc, want 0"
	rc=0
	ip netns exec "$NC" "$WORK/swarmvpn" doctor --qbittorrent "$QURL" --qbittorrent-user admin \
		--qbittorrent-pass adminadmin >"$WORK/logs/qbtsync-doctor3.log" 2>&1 || rc=$?
	CURLOGS+=("$WORK/logs/qbtsync-doctor3.log")
	[ $rc -eq 0 ] || fail "doctor after --fix: exit status $rc, want 0"
	[ "$(qbt pref proxy_peer_connections)" = "True" ] || fail "doctor --fix left proxy_peer_connections off"
	start_client qbtsync-client --forward auto --port-file "$d/port" --qbittorrent "$QURL" \
		--qbittorrent-user admin --qbittorrent-pass adminadmin
	wait_for 15 "forwarded port" test -s "$d/port"
	port=$(tr -dc 0-9 <"$d/port")
	wait_for 20 "qBittorrent listen_port = $port" qbt_port_is "$port"
	# the exit goes away; meanwhile qBittorrent's port changes; after the exit is back, it is synced again
	stop qbtsync-exit
	qbt setprefs '{"listen_port":6881,"random_port":false}'
	qbt_port_is 6881 || fail "could not change qBittorrent's listen_port"
	rm -f "$d/port"
	start_exit qbtsync-exit --forward-ports 40000-40099
	wait_for 60 "forwarded port after the exit restarted" test -s "$d/port"
	port=$(tr -dc 0-9 <"$d/port")
	wait_for 30 "qBittorrent listen_port = $port after the exit restarted" qbt_port_is "$port"
}

# tracker_peers HASH: the peers opentracker in inet hands out for HASH, one
# IP:PORT a line. It asks as a peer of its own (10.200.4.2:1, which it then
# removes with a "stopped" announce).
tracker_peers() {
	ip netns exec "$NI" "$PY" - "$1" <<'PYEOF'
import sys, urllib.parse, urllib.request
ih = urllib.parse.quote(bytes.fromhex(sys.argv[1]))
base = "http://10.200.4.2:6969/announce?info_hash=%s&peer_id=-E2E000-tracker-ask1&port=1&uploaded=0&downloaded=0&left=1&compact=1&numwant=50" % ih
op = urllib.request.build_opener(urllib.request.ProxyHandler({}))
body = op.open(base, timeout=5).read()
op.open(base + "&event=stopped", timeout=5).read()
i = body.find(b"5:peers")
if i >= 0:
    j = body.index(b":", i + 7)
    n = int(body[i + 7:j])
    peers = body[j + 1:j + 1 + n]
    for k in range(0, len(peers) - 5, 6):
        p = peers[k:k + 6]
        print("%d.%d.%d.%d:%d" % (p[0], p[1], p[2], p[3], p[4] << 8 | p[5]))
PYEOF
}
tracker_has() { tracker_peers "$1" | grep -qx "$2"; }
reach_is() { # reach_is CLIENT true|false: status --check --json says reachable is $2
	ip netns exec "$NC" "$WORK/swarmvpn" status --check --json --state-dir "$WORK/$1" >"$WORK/$1/status.json" &&
		"$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])).get("reachability") or {}; sys.exit(0 if str(r.get("reachable", False)).lower() == sys.argv[2] and r.get("checked") else 1)' \
			"$WORK/$1/status.json" "$2"
}

# private_seed NAME TRACKER_URL: qBittorrent 4.5.2 seeds a private torrent
# through swarmvpn, configured only through its WebUI API, its port kept by
# --qbittorrent; an unproxied libtorrent leecher in inet learns peers only
# from the tracker and downloads the whole file. The tracker must record
# exit:forwarded-port (qBittorrent itself announces port 1 through a proxy).
private_seed() {
	local name=$1 turl=$2 d=$WORK/$1 port hash
	mkdir -p "$d/tracker" "$d/qbt" "$d/leech"
	mkfile "$d/qbt/payload.bin" $((4 << 20))
	mktorrent -p -a "$turl" -l 18 -o "$d/t.torrent" "$d/qbt/payload.bin" >/dev/null
	hash=$($PY "$LTPEER" infohash "$d/t.torrent")
	echo "$hash" >"$d/tracker/whitelist.txt"
	chmod -R a+rX "$d/tracker"
	bg "$name-tracker" "$NI" opentracker -i 10.200.4.2 -p 6969 -P 6969 -d "$d/tracker" -w whitelist.txt -u nobody
	wait_for 10 "opentracker" ip netns exec "$NI" bash -c 'exec 3<>/dev/tcp/10.200.4.2/6969'
	start_exit "$name-exit" --forward-ports 40000-40099
	start_qbt "$name-qbt"
	qbt setprefs "${QPREFS%\}},\"pex\":false}"
	start_client "$name-client" --forward auto --port-file "$d/port" --qbittorrent "$QURL" \
		--qbittorrent-user admin --qbittorrent-pass adminadmin
	wait_for 15 "forwarded port" test -s "$d/port"
	port=$(tr -dc 0-9 <"$d/port")
	wait_for 20 "qBittorrent listen_port = $port" qbt_port_is "$port"
	qbt add "$d/t.torrent" "$d/qbt"
	wait_for 60 "qBittorrent to check the file and seed" qbt_done "$hash"
	local t=$((SECONDS + 60))
	until tracker_has "$hash" "10.200.4.1:$port"; do
		if [ $SECONDS -ge $t ]; then
			log "$name: the tracker hands out: $(tracker_peers "$hash" | tr '\n' ' '); qBittorrent's trackers: $(qbt trackers "$hash" | tr '\n' ' ')"
			fail "timed out waiting for the tracker to record the seeder at 10.200.4.1:$port"
		fi
		sleep 0.5
	done
	tracker_peers "$hash" >"$d/tracker-peers.txt"
	# (10.200.4.2:1 is tracker_peers asking)
	grep -v '^10\.200\.4\.2:1$' "$d/tracker-peers.txt" | grep -q ':1$' &&
		fail "the tracker also holds a peer at port 1: $(tr '\n' ' ' <"$d/tracker-peers.txt")"
	bg "$name-leecher" "$NI" "$PY" "$LTPEER" leech "$d/t.torrent" "$d/leech" --listen 10.200.4.2:6882 --timeout "$DEADLINE_DL"
	wait_for $((DEADLINE_DL + 5)) "the leecher to download from the seeder" grep -q '^done' "$WORK/logs/$name-leecher.log"
	cmp "$d/qbt/payload.bin" "$d/leech/payload.bin" || fail "downloaded file differs"
	grep -qx "peer 10.200.4.1:$port" "$WORK/logs/$name-leecher.log" ||
		fail "the leecher did not get its peer at 10.200.4.1:$port: $(grep '^peer' "$WORK/logs/$name-leecher.log" | tr '\n' ' ')"
	# the exit's probe reaches qBittorrent through the forwarded port...
	wait_for 60 "status --check to show the port reachable" reach_is "$name-client" true
	log "$name: $(cat "$WORK/$name-client/status.json" | tr -d '\n' | grep -o '"reachability":{[^}]*}')"
	# ...and no longer once qBittorrent is gone
	qbt shutdown || true
	stop "$name-qbt"
	wait_for 60 "status --check to show the port unreachable" reach_is "$name-client" false
	log "$name: after qBittorrent stopped: $(cat "$WORK/$name-client/status.json" | tr -d '\n' | grep -o '"reachability":{[^}]*}')"
}
s_seed() { private_seed seed http://10.200.4.2:6969/announce; }
s_seedudp() { private_seed seedudp udp://10.200.4.2:6969/announce; }

# ================================================================ main
ALL=(utp qbt http leak connectable qbtsync seed seedudp)
[ $# -gt 0 ] && ALL=("$@")

need_pkgs
log "building swarmvpn"
(cd "$ROOT" && go build -o "$WORK/swarmvpn" ./cmd/swarmvpn)
topology

for s in "${ALL[@]}"; do
	CURLOGS=()
	t0=$(date +%s.%N)
	set +e
	# in the background, so that a signal to this shell runs its trap at once
	(
		set -e
		"s_$s"
	) 2>"$WORK/logs/$s.err" &
	SPID=$!
	wait "$SPID"
	rc=$?
	SPID=
	set -e
	dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
	if [ $rc -eq 0 ]; then
		PASSED=$((PASSED + 1))
		echo "PASS $s (${dt}s)"
	else
		FAILED=$((FAILED + 1))
		echo "FAIL $s (${dt}s)"
		sed 's/^/    /' "$WORK/logs/$s.err"
		for f in "$WORK"/logs/"$s"-*; do
			[ -f "$f" ] || continue
			echo "    --- $f (last 30 lines)"
			tail -n 30 "$f" | sed 's/^/    /'
		done
	fi
	stop_all
	ip -n "$NC" route del 10.200.4.0/24 2>/dev/null || true
done
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
