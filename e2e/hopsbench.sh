#!/usr/bin/env bash
# One hop against two hops over the same shaped links, across network
# namespaces: the relay's namespace is also the router on the one-hop
# path, so both paths cross the same two bottleneck links and differ only
# in whether the relay carries the link (two hops) or routes its packets
# (one hop).
#
#   cli 10.202.1.2 ── 10.202.1.1 relay 10.202.2.1 ── 10.202.2.2 exit 10.202.3.1 ── 10.202.3.2 inet
#
# Each veth's egress is a tbf bottleneck of RATE. The two clients run side
# by side in cli: one hop on 127.0.0.1:1080, two hops on :1081. For ROUNDS
# rounds, alternating the paths, it downloads SIZE_MIB from an HTTP server
# in inet (curl through SOCKS5) and times 64-byte request/response
# exchanges on one open flow to an echo server there, then prints medians
# and the ratios two hops ÷ one hop. Run as root:
#   bash e2e/hopsbench.sh      (env: ROUNDS=5 SIZE_MIB=64 RATE=200mbit EXCHANGES=200)
# Needs iproute2 (tc), curl and /usr/bin/python3.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
ROUNDS=${ROUNDS:-5} SIZE_MIB=${SIZE_MIB:-64} RATE=${RATE:-200mbit} EXCHANGES=${EXCHANGES:-200}
export SWARMVPN_MDNS=false SWARMVPN_NAT=off SWARMVPN_DHT=false

ID=$$
NC=hbc$ID NR=hbr$ID NX=hbx$ID NI=hbi$ID
WORK=$(mktemp -d /tmp/swarmvpn-hopsbench.XXXXXX)
PIDS=()
log() { echo "[$(date +%T)] $*" >&2; }
cleanup() {
	set +e
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	for n in $NC $NR $NX $NI; do ip netns del "$n" 2>/dev/null; done
	[ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
mkfifo "$WORK/hold"
exec 9<>"$WORK/hold"
bg() { # bg NAME NS CMD...: log in $WORK/NAME.log
	local name=$1 ns=$2
	shift 2
	ip netns exec "$ns" "$@" <"$WORK/hold" >"$WORK/$name.log" 2>&1 &
	PIDS+=("$!")
}
wait_for() { # wait_for SECONDS WHAT CMD...
	local end=$((SECONDS + $1)) what=$2
	shift 2
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || { log "timed out waiting for $what"; tail -n 5 "$WORK"/*.log >&2; exit 1; }
		sleep 0.2
	done
}

# ---------------------------------------------------------------- network
for n in $NC $NR $NX $NI; do ip netns add "$n"; ip -n "$n" link set lo up; done
veth() { # veth NS1 IP1 NS2 IP2 NET: a link between two namespaces
	local a=v$ID$RANDOM b=w$ID$RANDOM
	ip link add "$a" netns "$1" type veth peer name "$b" netns "$3"
	ip -n "$1" addr add "$2/24" dev "$a"; ip -n "$1" link set "$a" up
	ip -n "$3" addr add "$4/24" dev "$b"; ip -n "$3" link set "$b" up
	for e in "$1 $a" "$3 $b"; do
		set -- $e
		ip netns exec "$1" tc qdisc add dev "$2" root tbf rate "$RATE" burst 64kb latency 20ms
	done
}
veth $NC 10.202.1.2 $NR 10.202.1.1
veth $NR 10.202.2.1 $NX 10.202.2.2
veth $NX 10.202.3.1 $NI 10.202.3.2
ip -n $NC route add default via 10.202.1.1
ip -n $NR route add 10.202.3.0/24 via 10.202.2.2
ip -n $NX route add 10.202.1.0/24 via 10.202.2.1
ip -n $NI route add default via 10.202.3.1
for n in $NR $NX; do ip netns exec $n sysctl -q -w net.ipv4.ip_forward=1; done

# ---------------------------------------------------------------- targets
log "building swarmvpn; a ${SIZE_MIB} MiB file in $WORK"
(cd "$ROOT" && go build -o "$WORK/swarmvpn" ./cmd/swarmvpn)
mkdir -p "$WORK/www"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$WORK/www/data.bin"
bg www $NI $PY -m http.server --bind 10.202.3.2 --directory "$WORK/www" 8000
cat >"$WORK/echo.py" <<'EOF'
import socket, threading
def serve(c):
    with c:
        while (b := c.recv(65536)):
            c.sendall(b)
s = socket.create_server(("10.202.3.2", 9000))
while True:
    c, _ = s.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
bg echo $NI $PY "$WORK/echo.py"
cat >"$WORK/rr.py" <<'EOF'
# rr.py SOCKS_PORT N: N 64-byte exchanges on one flow through SOCKS5 to
# 10.202.3.2:9000; prints the median round trip in microseconds.
import socket, struct, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port), timeout=30)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def readn(k):
    b = b""
    while len(b) < k:
        r = s.recv(k - len(b))
        if not r:
            raise SystemExit("closed")
        b += r
    return b
s.sendall(b"\x05\x01\x00")
assert readn(2) == b"\x05\x00"
s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("10.202.3.2") + struct.pack(">H", 9000))
r = readn(10)
assert r[1] == 0, "socks reply %d" % r[1]
msg, times = b"x" * 64, []
for _ in range(n):
    t = time.perf_counter()
    s.sendall(msg)
    assert readn(64) == msg
    times.append(time.perf_counter() - t)
times.sort()
print(round(times[len(times) // 2] * 1e6))
EOF

# ---------------------------------------------------------------- swarmvpn
for role in exit relay; do "$WORK/swarmvpn" keygen --key "$WORK/$role.key" >"$WORK/$role.id"; done
bg exit $NX "$WORK/swarmvpn" exit --key "$WORK/exit.key" --state-dir "$WORK/exit" --listen 10.202.2.2:443 \
	--allow-private --mdns=false --dht=false --log-level warn
bg relay $NR "$WORK/swarmvpn" exit --key "$WORK/relay.key" --state-dir "$WORK/relay" --listen 10.202.1.1:443 \
	--allow-private --mdns=false --dht=false --log-level warn
EXIT=$(cat "$WORK/exit.id")@10.202.2.2:443 RELAY=$(cat "$WORK/relay.id")@10.202.1.1:443
sleep 1
bg client1 $NC "$WORK/swarmvpn" connect --state-dir "$WORK/client1" --exit "$EXIT" \
	--socks 127.0.0.1:1080 --http off --mdns=false --dht=false --log-level warn
bg client2 $NC "$WORK/swarmvpn" connect --state-dir "$WORK/client2" --exit "$EXIT" --hops 2 --relay "$RELAY" \
	--socks 127.0.0.1:1081 --http off --mdns=false --dht=false --log-level warn
up() { ip netns exec $NC "$WORK/swarmvpn" status --json --state-dir "$1" | grep -q '"link": *"up"'; }
wait_for 30 "the one-hop link" up "$WORK/client1"
wait_for 30 "the two-hop path" up "$WORK/client2"
ip netns exec $NC "$WORK/swarmvpn" status --state-dir "$WORK/client2" | sed 's/^/  two hops: /' >&2

# ---------------------------------------------------------------- rounds
round() { # round NAME PORT
	local mbps us
	mbps=$(ip netns exec $NC curl -s -o /dev/null --max-time 120 --socks5 127.0.0.1:$2 \
		-w '%{speed_download}' http://10.202.3.2:8000/data.bin | awk '{printf "%.1f", $1 / 1e6}')
	us=$(ip netns exec $NC $PY "$WORK/rr.py" "$2" "$EXCHANGES")
	echo "$1 $mbps $us" >>"$WORK/results"
	log "$1: download $mbps MB/s, request/response median $us µs"
}
log "rate $RATE on each link; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for n in $(seq 1 "$ROUNDS"); do
	round one 1080
	round two 1081
done
log "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
med() { grep "^$1 " "$WORK/results" | awk -v c="$2" '{print $c}' | sort -g |
	awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
D1=$(med one 2) D2=$(med two 2) R1=$(med one 3) R2=$(med two 3)
echo "download MB/s: one hop $D1, two hops $D2, two ÷ one $(awk -v a="$D1" -v b="$D2" 'BEGIN {printf "%.2f", b / a}')"
echo "request/response µs: one hop $R1, two hops $R2, two ÷ one $(awk -v a="$R1" -v b="$R2" 'BEGIN {printf "%.2f", b / a}')"
