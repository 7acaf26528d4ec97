#!/usr/bin/env bash
# uTP through swarmvpn vs directly, across network namespaces: a uTP-only
# libtorrent leecher (with the swarmvpn client) in cli, the exit in exit
# (which also routes, for the direct path), two libtorrent seeders in inet.
#
#   cli 10.201.3.2 ── veth ── 10.201.3.1 exit 10.201.4.1 ── veth ── 10.201.4.2,.3 inet
#
# Direct: leecher → seeders over the routed path. swarmvpn: leecher → SOCKS5
# at the client → TLS link to the exit → UDP from 10.201.4.1 to the seeders.
# Alternates the two paths for ROUNDS rounds and prints medians and the
# ratio. Run as root:
#   bash e2e/utpbench.sh      (env: ROUNDS=3 SIZE_MIB=192 RATE=0 or e.g. 300mbit: a tbf
#                              bottleneck on each veth's egress; TIMEOUT=240;
#                              LEECH_RCVBUF=BYTES: the leecher's UDP receive buffer)
# Needs python3-libtorrent, iproute2 and curl. This kernel may lack netem, so
# the only link shaping is tbf (rate). Per round it prints, beside MB/s, the
# data packets the leecher took per ack it sent, the seeders' uTP losses,
# timeouts and fast retransmits, and each namespace's UDP buffer errors
# (RcvbufErrors in cli are datagrams the leecher's full socket dropped).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
PEER=$ROOT/e2e/utpstat.py
ROUNDS=${ROUNDS:-3} SIZE_MIB=${SIZE_MIB:-192} RATE=${RATE:-0} TIMEOUT=${TIMEOUT:-240}
export SWARMVPN_MDNS=false SWARMVPN_NAT=off
$PY -c 'import libtorrent' 2>/dev/null || { echo "needs python3-libtorrent" >&2; exit 2; }

ID=$$
NC=ubc$ID NX=ubx$ID NI=ubi$ID
WORK=$(mktemp -d /tmp/swarmvpn-utpbench.XXXXXX)
PIDS=()
log() { echo "[$(date +%T)] $*" >&2; }
cleanup() {
	set +e
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	for n in $NC $NX $NI; do ip netns del "$n" 2>/dev/null; done
	[ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
mkfifo "$WORK/hold"
exec 9<>"$WORK/hold"
bg() { # bg NAME NS CMD...: log in $WORK/NAME.log, pid in $LAST
	local name=$1 ns=$2
	shift 2
	ip netns exec "$ns" "$@" <"$WORK/hold" >"$WORK/$name.log" 2>&1 &
	LAST=$!
	PIDS+=("$LAST")
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
wait_for() { # wait_for SECONDS WHAT CMD...
	local end=$((SECONDS + $1)) what=$2
	shift 2
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || { log "timed out waiting for $what"; exit 1; }
		sleep 0.2
	done
}

# ---------------------------------------------------------------- network
for n in $NC $NX $NI; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add c0$ID type veth peer name c1$ID
ip link set c0$ID netns $NC; ip link set c1$ID netns $NX
ip link add e0$ID type veth peer name i0$ID
ip link set e0$ID netns $NX; ip link set i0$ID netns $NI
ip -n $NC addr add 10.201.3.2/24 dev c0$ID; ip -n $NC link set c0$ID up
ip -n $NX addr add 10.201.3.1/24 dev c1$ID; ip -n $NX link set c1$ID up
ip -n $NX addr add 10.201.4.1/24 dev e0$ID; ip -n $NX link set e0$ID up
ip -n $NI addr add 10.201.4.2/24 dev i0$ID; ip -n $NI addr add 10.201.4.3/24 dev i0$ID
ip -n $NI link set i0$ID up
ip -n $NC route add default via 10.201.3.1
ip -n $NI route add default via 10.201.4.1
ip netns exec $NX sysctl -q -w net.ipv4.ip_forward=1
if [ "$RATE" != 0 ]; then
	for d in "$NC c0$ID" "$NX c1$ID" "$NX e0$ID" "$NI i0$ID"; do
		set -- $d
		ip netns exec "$1" tc qdisc add dev "$2" root tbf rate "$RATE" burst 64kb latency 20ms
	done
fi

# ---------------------------------------------------------------- data
log "building swarmvpn, making a ${SIZE_MIB} MiB torrent in $WORK"
(cd "$ROOT" && go build -o "$WORK/swarmvpn" ./cmd/swarmvpn)
mkdir -p "$WORK/seed"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$WORK/seed/data.bin"
$PY "$PEER" make "$WORK/seed/data.bin" "$WORK/t.torrent" >/dev/null

# ---------------------------------------------------------------- swarmvpn
mkdir -p "$WORK/exit" "$WORK/client"
bg exit $NX "$WORK/swarmvpn" exit --state-dir "$WORK/exit" --listen 10.201.3.1:7843 \
	--public-addr 10.201.3.1 --allow-private --mdns=false --dht=false --metrics 127.0.0.1:9274 --log-level warn
wait_for 15 "the exit's address" grep -q '@10.201.3.1:7843' "$WORK/exit.log"
EXIT_ADDR=$(grep -m1 -oE '[A-Za-z0-9]+@10\.201\.3\.1:7843' "$WORK/exit.log")
bg client $NC "$WORK/swarmvpn" connect --state-dir "$WORK/client" --exit "$EXIT_ADDR" \
	--socks 127.0.0.1:1080 --http 127.0.0.1:8118 --mdns=false --dht=false --metrics 127.0.0.1:9273 --log-level warn
client_up() { ip netns exec $NC "$WORK/swarmvpn" status --json --state-dir "$WORK/client" | grep -q '"link": *"up"'; }
wait_for 20 "the client's link" client_up

# ---------------------------------------------------------------- rounds
udp_drops() { # udp_drops NS: the namespace's UDP receive-buffer and send-buffer errors
	ip netns exec "$1" awk '/^Udp:/ {if (!h) {split($0, k); h=1} else {split($0, v); for (i in k) if (k[i] ~ /RcvbufErrors|SndbufErrors/) printf "%s=%s ", k[i], v[i]}}' /proc/net/snmp
}
# round PATH N: one transfer; appends "PATH SECONDS MBPS ..." to $WORK/results
round() {
	local path=$1 n=$2 socks=() listen=10.201.3.2:6881 s1 s2 l
	rm -rf "$WORK/leech"; mkdir -p "$WORK/leech"
	local try
	for try in 1 2 3; do # python3-libtorrent 2.0.8 now and then dies at start (SIGSEGV)
		bg seed1-$n $NI $PY "$PEER" seed "$WORK/t.torrent" "$WORK/seed" --listen 10.201.4.2:6881; s1=$LAST
		bg seed2-$n $NI $PY "$PEER" seed "$WORK/t.torrent" "$WORK/seed" --listen 10.201.4.3:6881; s2=$LAST
		seeders_ready() { grep -q ready "$WORK/seed1-$n.log" && grep -q ready "$WORK/seed2-$n.log"; }
		seeders_alive() { kill -0 $s1 2>/dev/null && kill -0 $s2 2>/dev/null; }
		local end=$((SECONDS + 60))
		while ! seeders_ready && seeders_alive && [ $SECONDS -lt $end ]; do sleep 0.2; done
		seeders_ready && seeders_alive && break
		log "seeders did not start (try $try): $(tail -q -n 2 "$WORK/seed1-$n.log" "$WORK/seed2-$n.log" | tr '\n' ' ')"
		stop $s1; stop $s2
		[ $try -lt 3 ] || exit 1
	done
	if [ "$path" = swarmvpn ]; then socks=(--socks 127.0.0.1:1080); listen=127.0.0.1:6881; fi
	local before; before="cli[$(udp_drops $NC)] exit[$(udp_drops $NX)] inet[$(udp_drops $NI)]"
	bg leech-$n $NC $PY "$PEER" leech "$WORK/t.torrent" "$WORK/leech" --listen $listen \
		--peer 10.201.4.2:6881 --peer 10.201.4.3:6881 "${socks[@]}" --timeout "$TIMEOUT"
	l=$LAST
	wait "$l" || true
	sleep 1.2 # one more counter line from each seeder
	stop $s1; stop $s2
	local done secs mbps
	done=$(grep -m1 '^done' "$WORK/leech-$n.log" || true)
	if [ -z "$done" ]; then
		log "$path round $n failed: $(tail -3 "$WORK/leech-$n.log" | tr '\n' ' ')"
		echo "$path fail" >>"$WORK/results"
		return
	fi
	secs=$(echo "$done" | awk '{print $3}')
	mbps=$(awk -v b=$((SIZE_MIB << 20)) -v s="$secs" 'BEGIN {printf "%.1f", b / s / 1e6}')
	# data packets per leecher ack: payload packets in / (packets out - payload out)
	local lu s1u s2u
	lu=$(grep -m1 '^utp ' "$WORK/leech-$n.log" | cut -d' ' -f2-)
	s1u=$(grep '^utp ' "$WORK/seed1-$n.log" | tail -1 | cut -d' ' -f2-)
	s2u=$(grep '^utp ' "$WORK/seed2-$n.log" | tail -1 | cut -d' ' -f2-)
	local ack loss tmo
	ack=$(echo "$lu" | tr ' ' '\n' | awk -F= '{v[$1]=$2} END {a=v["utp_packets_out"]-v["utp_payload_pkts_out"]; printf "%.1f", a ? v["utp_payload_pkts_in"]/a : 0}')
	loss=$(echo "$s1u $s2u" | tr ' ' '\n' | awk -F= '$1=="utp_packet_loss" {s+=$2} END {print s+0}')
	tmo=$(echo "$s1u $s2u" | tr ' ' '\n' | awk -F= '$1=="utp_timeout" {s+=$2} END {print s+0}')
	local fr; fr=$(echo "$s1u $s2u" | tr ' ' '\n' | awk -F= '$1=="utp_fast_retransmit" {s+=$2} END {print s+0}')
	local after; after="cli[$(udp_drops $NC)] exit[$(udp_drops $NX)] inet[$(udp_drops $NI)]"
	echo "$path $secs $mbps pkts/ack=$ack seeder_loss=$loss seeder_timeouts=$tmo fast_rexmit=$fr" >>"$WORK/results"
	log "$path round $n: ${secs}s ${mbps} MB/s, data pkts/ack $ack, seeders' losses $loss timeouts $tmo fast-rexmit $fr; udp errors before $before after $after"
	{ echo "leech $path $n: $lu"; echo "seed1 $path $n: $s1u"; echo "seed2 $path $n: $s2u"; } >>"$WORK/counters"
}
log "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for n in $(seq 1 "$ROUNDS"); do
	round direct d$n
	round swarmvpn s$n
done
log "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$RATE" != 0 ]; then
	for d in "$NC c0$ID" "$NX c1$ID" "$NX e0$ID" "$NI i0$ID"; do
		set -- $d
		log "tc $1 $2: $(ip netns exec "$1" tc -s qdisc show dev "$2" | grep -o 'dropped [0-9]*, overlimits [0-9]*')"
	done
fi
log "client metrics (drops): $(ip netns exec $NC curl -s 127.0.0.1:9273/metrics | grep -iE 'drop|lost' | grep -v '^#' | tr '\n' ' ')"
log "exit metrics (drops): $(ip netns exec $NX curl -s 127.0.0.1:9274/metrics | grep -iE 'drop|lost' | grep -v '^#' | tr '\n' ' ')"
cat "$WORK/counters" >&2
cat "$WORK/results"
med() { grep "^$1 " "$WORK/results" | grep -v fail | awk '{print $3}' | sort -g | awk '{a[NR]=$1} END {if (NR) print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2); else print 0}'; }
D=$(med direct) S=$(med swarmvpn)
echo "median MB/s: direct $D swarmvpn $S ratio $(awk -v d="$D" -v s="$S" 'BEGIN {printf "%.2f", d ? s/d : 0}')"
