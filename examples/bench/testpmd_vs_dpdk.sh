#!/bin/bash
# rdk-testpmd vs dpdk-testpmd, in one run, on the same CPUs.
#
#   sudo examples/bench/testpmd_vs_dpdk.sh            # DUR=12 s per run, REPS=1
#   sudo REPS=3 examples/bench/testpmd_vs_dpdk.sh     # careful run: medians of 3
#   sudo examples/bench/testpmd_vs_dpdk.sh --quick    # smoke test: DUR=3, REPS=1
#
# Cases (the DPDK command lines are the anchors' testpmd_null.sh / testpmd_ring.sh, verbatim):
#   null_io      net_null0 <-> net_null1, io forward, 1 forwarding core   target rdk/DPDK >= 1.1
#   null_txonly  net_null0, txonly 64 B, loop topology                    (reported only)
#   null_rxonly  net_null0, rxonly, loop topology                         (reported only)
#   ring_io      net_ring0 <-> net_ring1, io forward, --tx-first          target rdk/DPDK >= 1.0
#   tap_txonly   net_tap0 txonly 64 B into the kernel, inside a network namespace (the anchors'
#                testpmd_tap.sh)                                          target rdk/DPDK >= 1.1
#   afpacket_tx  net_af_packet0 txonly 64 B on a veth (testpmd_afpacket.sh)  target >= 1.3
#   afpacket_rx  net_af_packet0 rxonly on a veth, dpdk-testpmd txonly generator on the peer
#                                                                         target >= 1.3
#   afxdp_tx     net_af_xdp0 txonly 64 B on the same veth (testpmd_afxdp.sh)   target >= 1.1
#   afxdp_rx     net_af_xdp0 rxonly on the veth, dpdk-testpmd net_af_xdp txonly generator on
#                the peer (testpmd_afxdp.sh)                              target >= 1.1
#   vu_<ring>_mrg<0|1>_<dir>  virtio-user <-> DPDK's vhost (the anchors' testpmd_vhost_virtio.sh,
#                same CPU placement): dpdk-testpmd with net_vhost0 on one side (forwarding lcore
#                on CPU 0), the frontend on the other (forwarding on CPU 1) — DPDK's
#                net_virtio_user for DPDK's figure, rdk-testpmd's net_virtio_user for rdk's.
#                v2h: frontend txonly 64 B -> vhost rxonly; h2v: vhost txonly -> frontend rxonly.
#                The figure is the receiver's Rx rate (active seconds). Targets: split mrg0
#                >= 1.1, split mrg1 >= 1.0, packed mrg1 >= 1.0; packed mrg0 reported only.
# CASES="null_io tap_txonly" selects cases (default: all).
# Both programs: main thread (statistics) on CPU 0, the forwarding thread on CPU 1
# (dpdk-testpmd -l 0-1; rdk-testpmd pins core c to CPU (c+1) % ncpus). DPDK and rdk alternate
# (the order flips every repetition); the figure of a run is the median of its per-second
# samples (parse_testpmd.py, first 2 dropped), the figure of a case the median over REPS.
# (dpdk-testpmd 22.11 prints its first block, Rx-pps 0, as forwarding starts and then, on a VM
# like this one, every ~2 s despite --stats-period=1, so it yields fewer samples than rdk.)
# Also per run: cycles per packet of the forwarding thread (`perf stat -e cycles -t TID --
# sleep 5`, cycles / (Mpps * 1e6 * 5), as the anchors' figure), where perf counts cycles, and
# always an estimate from the thread's CPU time at the TSC rate; memory (VmRSS + HugetlbPages
# of /proc/PID/status, sampled mid-run) for the same --total-num-mbufs=32768 (target for
# null_io: rdk <= DPDK). The last lines are one SUMMARY line per case (PASS/MISS where a
# target exists) and one for memory.
#
# Environment: DUR (s per run, default 12, >= 3), REPS (default 1), QUIET_WAIT (s to wait for
# quiet CPUs before each run, default 120; 10 with --quick), FOREIGN_MAX (% of one CPU other
# processes may use during a run before it is re-run, default 25; up to TRIES=3 tries, 1 with
# --quick), PERF_SECS (perf window, default 5), RDK_SHARED (the shared/ checkout, default
# <repo>/../shared), RDK_TESTPMD (a prebuilt rdk-testpmd; else it is built with cargo, honouring
# CARGO_TARGET_DIR), TESTPMD (dpdk-testpmd), RAW_DIR (logs; default a new /tmp directory).
# Under CI=true a missing prerequisite (root, dpdk-testpmd, hugepages, the anchors) fails the
# run; otherwise the script says what is missing and exits 0. A run that yields no figure
# exits 1; a MISS does not.

set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

QUICK=0
for a in "$@"; do
	case "$a" in
	--quick) QUICK=1 ;;
	-h | --help)
		sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "unknown argument: $a (try --help)" >&2
		exit 2
		;;
	esac
done
if [ "$QUICK" = 1 ]; then
	DUR=3
	REPS=1
	QUIET_WAIT=${QUIET_WAIT:-10}
	TRIES=${TRIES:-1}
fi
DUR=${DUR:-12}
REPS=${REPS:-1}
TRIES=${TRIES:-3}
export QUIET_WAIT=${QUIET_WAIT:-120}
PERF_SECS=${PERF_SECS:-5}
IS_CI=0
case "${CI:-}" in true | TRUE | True | 1) IS_CI=1 ;; esac

if ! [[ "$DUR" =~ ^[0-9]+$ ]] || [ "$DUR" -lt 3 ]; then
	echo "DUR must be a whole number of seconds >= 3 (got $DUR)" >&2
	exit 2
fi
if ! [[ "$REPS" =~ ^[0-9]+$ ]] || [ "$REPS" -lt 1 ]; then
	echo "REPS must be >= 1 (got $REPS)" >&2
	exit 2
fi
# The perf window must fit after the warm-up samples and before the end of the run.
PRE=2
if [ "$DUR" -lt $((PERF_SECS + 5)) ]; then
	PERF_SECS=$((DUR - 2 < PERF_SECS ? DUR - 2 : PERF_SECS))
	[ "$PERF_SECS" -lt 1 ] && PERF_SECS=1
	PRE=0.5
fi
WARMUP=2
[ "$DUR" -lt 6 ] && WARMUP=1

MISSING=()
missing() { MISSING+=("$1"); }
report_missing() {
	[ "${#MISSING[@]}" -eq 0 ] && return 0
	echo "testpmd_vs_dpdk: cannot run the comparison; missing:"
	local m
	for m in "${MISSING[@]}"; do echo "  - $m"; done
	[ -n "${MADE_RAW_DIR:-}" ] && rmdir "$RAW_DIR" 2>/dev/null
	if [ "$IS_CI" = 1 ]; then
		echo "CI=true: a missing prerequisite is a failure"
		exit 1
	fi
	echo "(not CI: skipping, exit 0)"
	exit 0
}

# One run at a time on a machine: runs share the anchors' namespaces, veth names, hugepage
# file prefixes and the vhost-user socket, so a second run started meanwhile (another
# checkout, a test tier) would break both. It waits here instead, and says so.
BENCH_LOCK=${BENCH_LOCK:-/tmp/rdk-testpmd_vs_dpdk.lock}
exec 8>"$BENCH_LOCK"
if ! flock -n 8; then
	echo "testpmd_vs_dpdk: another run holds $BENCH_LOCK; waiting for it"
	flock 8
fi

ANCHORS="${RDK_SHARED:-$REPO/../shared}/dpdk-anchors"
if [ ! -f "$ANCHORS/lib.sh" ] || [ ! -f "$ANCHORS/parse_testpmd.py" ]; then
	missing "the DPDK anchors at $ANCHORS (set RDK_SHARED to the shared/ checkout)"
	report_missing
fi
ANCHORS=$(cd "$ANCHORS" && pwd)
# lib.sh keeps its logs in RAW_DIR; the anchors directory is not ours to write into.
if [ -z "${RAW_DIR:-}" ]; then
	RAW_DIR=$(mktemp -d /tmp/testpmd_vs_dpdk.XXXXXX)
	MADE_RAW_DIR=1
fi
export RAW_DIR
# shellcheck source=/dev/null
source "$ANCHORS/lib.sh"

[ "$(id -u)" = 0 ] || missing "root (hugepages for both programs, installing DPDK)"
command -v python3 >/dev/null || missing "python3 (the anchors' log parser)"
if [ "$(id -u)" = 0 ]; then
	need_dpdk >/dev/null 2>&1 || log "need_dpdk: apt-get failed"
	command -v perf >/dev/null || need_pkgs linux-perf >/dev/null 2>&1 || true
fi
command -v "$TESTPMD" >/dev/null || missing "dpdk-testpmd ($TESTPMD; Debian package dpdk)"
report_missing

# Everything we start, so that an interrupted run leaves nothing behind.
STARTED=()
cleanup() {
	local p
	for p in "${STARTED[@]}"; do
		# TERM: both programs stop on it and print their summary (a script's background jobs
		# start with SIGINT ignored, so INT would not reach them)
		kill -0 "$p" 2>/dev/null && stop_pid "$p" TERM
	done
	huge_cleanup
	[ -n "${NS_MADE:-}" ] && ns_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT TERM

huge_setup 512
HFREE=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
if [ "${HFREE:-0}" -lt 256 ]; then
	missing "hugepages: only ${HFREE:-0} free 2 MiB pages after asking for 512 (/proc/sys/vm/nr_hugepages)"
	report_missing
fi

# rdk-testpmd: a given binary, or build it.
if [ -n "${RDK_TESTPMD:-}" ]; then
	RDK=$RDK_TESTPMD
else
	if ! command -v cargo >/dev/null; then
		missing "cargo (to build rdk-testpmd), or RDK_TESTPMD=/path/to/rdk-testpmd"
		report_missing
	fi
	TD=${CARGO_TARGET_DIR:-$REPO/target}
	case "$TD" in /*) ;; *) TD=$REPO/$TD ;; esac
	log "building rdk-testpmd (cargo build --release -p rdk-examples --bin rdk-testpmd)"
	if ! (cd "$REPO" && cargo build -q --release -p rdk-examples --bin rdk-testpmd) >&2; then
		echo "testpmd_vs_dpdk: building rdk-testpmd failed"
		exit 1
	fi
	RDK=$TD/release/rdk-testpmd
fi
if [ ! -x "$RDK" ]; then
	echo "testpmd_vs_dpdk: no rdk-testpmd at $RDK"
	exit 1
fi
RDK_HELP=$("$RDK" --help 2>&1)

# perf: does it count cycles here (a VM without a virtual PMU does not)?
PERF_OK=no
PERF_WHY="perf not installed"
if command -v perf >/dev/null; then
	P=$(perf stat -x, -e cycles -- awk 'BEGIN {for (i = 0; i < 3000000; i++) s += i}' 2>&1 >/dev/null)
	C=$(echo "$P" | awk -F, '$3 ~ /^cycles/ {print $1; exit}')
	if [[ "$C" =~ ^[0-9]+$ ]] && [ "$C" -gt 0 ]; then
		PERF_OK=yes
		PERF_WHY=""
	else
		PERF_WHY="perf stat -e cycles: ${C:-no output} (no hardware cycle counter here)"
	fi
fi
TSC_MHZ=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Detected \([0-9.]*\) MHz.*/\1/p' | head -1)
[ -z "$TSC_MHZ" ] && TSC_MHZ=$(awk -F: '/^cpu MHz/ {gsub(/ /, "", $2); print $2; exit}' /proc/cpuinfo)
HZ_TICKS=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------------------------
# Cases: DPDK's arguments exactly as in the anchors; rdk-testpmd gets the same vdevs and the
# flags after `--` that its --help knows, plus --duration.
VU_ALL="vu_split_mrg0_v2h vu_split_mrg0_h2v vu_split_mrg1_v2h vu_split_mrg1_h2v vu_packed_mrg1_v2h vu_packed_mrg1_h2v vu_packed_mrg0_v2h vu_packed_mrg0_h2v"
read -r -a CASES <<<"${CASES:-null_io null_txonly null_rxonly ring_io tap_txonly afpacket_tx afpacket_rx afxdp_tx afxdp_rx $VU_ALL}"
declare -A VDEVS ARGS FIELD TARGET DESC NETNS GEN EALS MAINCPU RDKARGS VU_DIR
MB="--total-num-mbufs=32768"
VDEVS[null_io]="net_null0 net_null1"
ARGS[null_io]="--forward-mode=io --nb-cores=1 --auto-start --stats-period=1 $MB"
FIELD[null_io]=rx
TARGET[null_io]=1.1
DESC[null_io]="net_null io fwd, 2 ports, 1 core (sum of Rx)"
VDEVS[null_txonly]="net_null0"
ARGS[null_txonly]="--forward-mode=txonly --txpkts=64 --port-topology=loop --nb-cores=1 --auto-start --stats-period=1 $MB"
FIELD[null_txonly]=tx
TARGET[null_txonly]=""
DESC[null_txonly]="net_null txonly 64 B, loop (Tx)"
VDEVS[null_rxonly]="net_null0"
ARGS[null_rxonly]="--forward-mode=rxonly --port-topology=loop --nb-cores=1 --auto-start --stats-period=1 $MB"
FIELD[null_rxonly]=rx
TARGET[null_rxonly]=""
DESC[null_rxonly]="net_null rxonly, loop (Rx)"
VDEVS[ring_io]="net_ring0 net_ring1"
ARGS[ring_io]="--forward-mode=io --nb-cores=1 --auto-start --tx-first --stats-period=1 $MB"
FIELD[ring_io]=rx
TARGET[ring_io]=1.0
DESC[ring_io]="net_ring io fwd --tx-first, 2 ports (sum of Rx)"
VDEVS[tap_txonly]="net_tap0,iface=anchor_tap0"
ARGS[tap_txonly]="--forward-mode=txonly --txpkts=64 --port-topology=loop --nb-cores=1 --auto-start --stats-period=1 $MB"
FIELD[tap_txonly]=tx
TARGET[tap_txonly]=1.1
DESC[tap_txonly]="net_tap txonly 64 B into the kernel, in a namespace (Tx)"
NETNS[tap_txonly]=$NS_A
# AF_PACKET over the anchors' veth pair (testpmd_afpacket.sh): tx from A into the kernel's veth;
# rx on A with a dpdk-testpmd txonly generator on B (receiver's forwarding lcore on CPU 0,
# generator's on CPU 1, as run_gen_rx places them).
VDEVS[afpacket_tx]="net_af_packet0,iface=$VA"
ARGS[afpacket_tx]="--forward-mode=txonly --txpkts=64 --port-topology=loop --nb-cores=1 --auto-start --stats-period=1 $MB"
FIELD[afpacket_tx]=tx
TARGET[afpacket_tx]=1.3
NETNS[afpacket_tx]=$NS_A
VDEVS[afpacket_rx]="net_af_packet0,iface=$VA"
ARGS[afpacket_rx]="--forward-mode=rxonly --port-topology=loop --nb-cores=1 --auto-start --stats-period=1 $MB"
FIELD[afpacket_rx]=rx
TARGET[afpacket_rx]=1.3
NETNS[afpacket_rx]=$NS_A
EALS[afpacket_rx]="--no-pci --lcores 0@1,1@0 --in-memory"
MAINCPU[afpacket_rx]=1
GEN[afpacket_rx]="ip netns exec $NS_B $TESTPMD --no-pci --lcores 0@0,1@1 --in-memory --file-prefix rdkbench_gen --vdev net_af_packet0,iface=$VB -- --forward-mode=txonly --txpkts=64 --port-topology=loop --nb-cores=1 --auto-start --stats-period=1 $MB"
# AF_XDP on the same pair (testpmd_afxdp.sh): both programs attach their own XDP program to A
# (the kernel picks native XDP on veth) and bind in copy mode (veth has no zero-copy); the rx
# generator is dpdk-testpmd's net_af_xdp on B, as in the anchors.
VDEVS[afxdp_tx]="net_af_xdp0,iface=$VA,start_queue=0,queue_count=1"
ARGS[afxdp_tx]="--forward-mode=txonly --txpkts=64 --port-topology=loop --nb-cores=1 --auto-start --stats-period=1 $MB"
FIELD[afxdp_tx]=tx
TARGET[afxdp_tx]=1.1
NETNS[afxdp_tx]=$NS_A
VDEVS[afxdp_rx]="net_af_xdp0,iface=$VA,start_queue=0,queue_count=1"
ARGS[afxdp_rx]="--forward-mode=rxonly --port-topology=loop --nb-cores=1 --auto-start --stats-period=1 $MB"
FIELD[afxdp_rx]=rx
TARGET[afxdp_rx]=1.1
NETNS[afxdp_rx]=$NS_A
EALS[afxdp_rx]="--no-pci --lcores 0@1,1@0 --in-memory"
MAINCPU[afxdp_rx]=1
# dpdk-testpmd passes no descriptor count (--rxd/--txd default 0), so DPDK's net_af_xdp uses its
# own default rings of 2048 (fill 4096); rdk-testpmd always passes --rxd/--txd (default 1024), so
# it is given the same 2048 here: equal rings, not a tuned rdk.
RDKARGS[afxdp_tx]="--rxd=2048 --txd=2048"
RDKARGS[afxdp_rx]="--rxd=2048 --txd=2048"
GEN[afxdp_rx]="ip netns exec $NS_B $TESTPMD --no-pci --lcores 0@0,1@1 --in-memory --file-prefix rdkbench_gen --vdev net_af_xdp0,iface=$VB,start_queue=0,queue_count=1 -- --forward-mode=txonly --txpkts=64 --port-topology=loop --nb-cores=1 --auto-start --stats-period=1 $MB"
# virtio-user <-> vhost: VDEVS is the frontend's, VU_DIR says which side sends.
VU_SOCK=/tmp/rdkbench_vhost.sock
for c in $VU_ALL; do
	IFS=_ read -r _ ring mrg dir <<<"$c"
	pk=0
	[ "$ring" = packed ] && pk=1
	VDEVS[$c]="net_virtio_user0,path=$VU_SOCK,queues=1,packed_vq=$pk,mrg_rxbuf=${mrg#mrg}"
	VU_DIR[$c]=$dir
	FIELD[$c]=rx
	case "$ring.$mrg" in
	split.mrg0) TARGET[$c]=1.1 ;;
	split.mrg1 | packed.mrg1) TARGET[$c]=1.0 ;;
	*) TARGET[$c]="" ;;
	esac
	if [ "$dir" = v2h ]; then
		ARGS[$c]="--forward-mode=txonly --txpkts=64 --port-topology=loop --nb-cores=1 --auto-start --stats-period=1 $MB"
	else
		ARGS[$c]="--forward-mode=rxonly --port-topology=loop --nb-cores=1 --auto-start --stats-period=1 $MB"
	fi
	# As the anchors: frontend main lcore on CPU 0, forwarding on CPU 1.
	EALS[$c]="--no-pci --lcores 0@0,1@1 --in-memory --single-file-segments"
	MAINCPU[$c]=0
done
EAL=(--no-pci -l 0-1 --in-memory)
# A case with a generator needs time for it to start and a few seconds of traffic.
for c in "${CASES[@]}"; do
	[ -n "${GEN[$c]:-}" ] && [ "$DUR" -lt 8 ] && DUR=8
done
for c in "${CASES[@]}"; do
	[ -n "${VDEVS[$c]:-}" ] || {
		echo "unknown case $c" >&2
		exit 2
	}
	# The namespaces of lib.sh (anchor_dpdk_a/b with a veth pair), made once for all cases.
	[ -n "${NETNS[$c]:-}" ] && [ -z "${NS_MADE:-}" ] && ns_setup && NS_MADE=1
done

DROPPED_FLAGS=""
# rdk_args CASE: rdk-testpmd's argument list (one per line).
rdk_args() {
	local v f name
	for v in ${VDEVS[$1]}; do printf '%s\n' --vdev "$v"; done
	for f in ${ARGS[$1]}; do
		name=${f%%=*}
		if grep -qE -- "(^|[ ,])$name([ =,]|$)" <<<"$RDK_HELP"; then
			printf '%s\n' "$f"
		else
			case " $DROPPED_FLAGS " in *" $name "*) ;; *) DROPPED_FLAGS="$DROPPED_FLAGS $name" ;; esac
		fi
	done
	for f in ${RDKARGS[$1]:-}; do printf '%s\n' "$f"; done
	[ -n "${MAINCPU[$1]:-}" ] && printf '%s\n' --main-cpu "${MAINCPU[$1]}"
	# virtio-user rings are queue_size (256) entries, which DPDK's PMD uses whatever --rxd says.
	[ -n "${VU_DIR[$1]:-}" ] && printf '%s\n' --rxd 256 --txd 256
	printf '%s\n' --duration "$DUR"
}
# dpdk_args CASE
dpdk_args() {
	local v
	if [ -n "${EALS[$1]:-}" ]; then
		# shellcheck disable=SC2086
		printf '%s\n' ${EALS[$1]}
	else
		printf '%s\n' "${EAL[@]}"
	fi
	for v in ${VDEVS[$1]}; do printf '%s\n' --vdev "$v"; done
	printf '%s\n' --
	printf '%s\n' ${ARGS[$1]}
}

# ---------------------------------------------------------------------------------------------
# Per-process helpers.

# task_ticks PID: "tid cpu_ticks comm last_cpu" per thread
task_ticks() {
	local t s comm rest
	for t in /proc/"$1"/task/*; do
		s=$(cat "$t/stat" 2>/dev/null) || continue
		comm=${s#*(}
		comm=${comm%)*}
		rest=${s##*) }
		# shellcheck disable=SC2086
		set -- $rest
		echo "${t##*/} $((${12} + ${13})) ${comm// /_} ${37}"
	done
}

# pick_fwd_thread IMPL BEFORE AFTER: "tid comm how" of the forwarding thread, from two
# task_ticks snapshots: by name (DPDK: rte-worker-1 / lcore-worker-1; rdk: rdk-fwd-N), else the
# thread that used the most CPU between the snapshots.
pick_fwd_thread() {
	local pat
	if [ "$1" = dpdk ]; then pat='^(rte|lcore)-worker-1$'; else pat='^rdk-fwd-[0-9]+$'; fi
	awk -v pat="$pat" '
		NR == FNR { t0[$1] = $2; next }
		{ d = $2 - t0[$1]; if ($3 ~ pat && !named) { named = $1 " " $3 " name"; }
		  if (d > bd || best == "") { bd = d; best = $1 " " $3 " busiest" } }
		END { if (named != "") print named; else print best }' "$2" "$3"
}

# proc_ticks PID: user+system ticks of the whole process
proc_ticks() {
	local s
	s=$(cat /proc/"$1"/stat 2>/dev/null) || return 1
	s=${s##*) }
	# shellcheck disable=SC2086
	set -- $s
	echo $((${12} + ${13}))
}

# foreign_monitor PID OUT [GEN_PID]: every second, % of one CPU used by anything but PID (and
# the case's own traffic generator GEN_PID; all CPUs' busy time from /proc/stat minus theirs),
# one line per second, until PID exits.
foreign_monitor() {
	local pid=$1 out=$2 gen=${3:-}
	(
		busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
		ours() {
			local a g=0
			a=$(proc_ticks "$pid") || return 1
			[ -n "$gen" ] && g=$(proc_ticks "$gen" 2>/dev/null || echo 0)
			echo $((a + g))
		}
		b0=$(busy)
		p0=$(ours) || exit 0
		t0=$(date +%s%N)
		while sleep 1; do
			b1=$(busy)
			p1=$(ours) || break
			t1=$(date +%s%N)
			awk -v b="$((b1 - b0))" -v p="$((p1 - p0))" -v dt="$((t1 - t0))" -v hz="$HZ_TICKS" \
				'BEGIN { f = (b - p) / hz / (dt / 1e9) * 100; if (f < 0) f = 0; printf "%.0f\n", f }'
			b0=$b1
			p0=$p1
			t0=$t1
		done
	) >"$out" 2>/dev/null &
	MONITOR_PID=$!
}
foreign_summary() {
	awk 'BEGIN {m = 0; t = 0; n = 0} {if ($1 > m) m = $1; t += $1; n++}
		END {if (n) printf "max=%d%% mean=%.0f%%\n", m, t / n; else print "max=n/a"}' "$1"
}

# sleep_until EPOCH_SECONDS (fractional)
sleep_until() {
	sleep "$(awk -v a="$1" -v n="$(date +%s.%N)" 'BEGIN {l = a - n; printf "%.3f", (l > 0 ? l : 0)}')"
}

# median VALUES...: median of the numeric arguments ("n/a" if none)
median() {
	printf '%s\n' "$@" | grep -E '^[0-9]+(\.[0-9]+)?$' | sort -g |
		awk '{a[NR] = $1} END {if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR + 1) / 2];
			else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
num() { [[ "$1" =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
fmt1() { if num "$1"; then printf '%.1f' "$1"; else printf '%s' "$1"; fi; }
fmt3() { if num "$1"; then printf '%.3f' "$1"; else printf '%s' "$1"; fi; }
ratio() { if num "$1" && num "$2" && awk -v b="$2" 'BEGIN {exit !(b > 0)}'; then awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; else echo n/a; fi; }

# ---------------------------------------------------------------------------------------------
# run_one IMPL CASE REP: one run; sets R_MPPS R_CPP R_TCPP R_CPU R_RSS R_HUGE R_NOTE.
declare -A MPPS CPP TCPP MEMRSS MEMHUGE RUNNOTE
FAILED_RUNS=()
run_one() {
	local impl=$1 case=$2 rep=$3
	local name="${case}_${impl}_r${rep}" logf try pid cmd=() t1 rc tid tcomm how
	logf="$RAW_DIR/$name.log"
	if [ "$impl" = dpdk ]; then
		mapfile -t cmd < <(dpdk_args "$case")
		cmd=("$TESTPMD" "${cmd[@]}")
	else
		mapfile -t cmd < <(rdk_args "$case")
		cmd=("$RDK" "${cmd[@]}")
	fi
	# `ip netns exec` execs the program, so the pid we watch is still the program's.
	[ -n "${NETNS[$case]:-}" ] && cmd=(ip netns exec "${NETNS[$case]}" "${cmd[@]}")
	for try in $(seq 1 "$TRIES"); do
		R_MPPS=n/a R_CPP=n/a R_TCPP=n/a R_CPU=n/a R_RSS=n/a R_HUGE=n/a R_NOTE=""
		wait_quiet
		local load
		load=$(cut -d' ' -f1-3 /proc/loadavg)
		start_bg "$name" "${cmd[@]}"
		pid=$BG_PID
		STARTED+=("$pid")
		local gpid=""
		if [ -n "${GEN[$case]:-}" ]; then
			# The traffic generator on the peer end, started once the receiver is up (as the
			# anchors' run_gen_rx); its own figure is in ${name}_gen.log.
			sleep 2
			# shellcheck disable=SC2086
			start_bg "${name}_gen" ${GEN[$case]}
			gpid=$BG_PID
			STARTED+=("$gpid")
		fi
		foreign_monitor "$pid" "$RAW_DIR/$name.foreign" "$gpid"
		# Forwarding has run ~1 s when the first statistics block appears.
		t1=""
		for _ in $(seq 1 600); do
			if grep -q "Port statistics ====" "$logf" 2>/dev/null; then
				t1=$(date +%s.%N)
				break
			fi
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if [ -z "$t1" ]; then
			stop_pid "$pid" TERM
			kill "$MONITOR_PID" 2>/dev/null
			wait "$MONITOR_PID" 2>/dev/null
			R_NOTE="no statistics printed (see $logf)"
			log "$name: $R_NOTE"
			FAILED_RUNS+=("$name")
			return
		fi
		# When forwarding began: dpdk-testpmd prints its first block (Rx-pps 0) as forwarding
		# starts, rdk-testpmd after the first period.
		local fwd0
		if [ "$impl" = dpdk ]; then fwd0=$t1; else fwd0=$(awk -v t="$t1" 'BEGIN {printf "%.3f", t - 1}'); fi
		# Find the forwarding thread while the warm-up samples go by, then count its cycles
		# from 1 + PRE s into forwarding on.
		task_ticks "$pid" >"$RAW_DIR/$name.tasks0"
		sleep_until "$(awk -v t="$fwd0" -v p="$PRE" 'BEGIN {printf "%.3f", t + 1 + p}')"
		task_ticks "$pid" >"$RAW_DIR/$name.tasks1"
		read -r tid tcomm how < <(pick_fwd_thread "$impl" "$RAW_DIR/$name.tasks0" "$RAW_DIR/$name.tasks1")
		local tk0 tk1 tcpu perfpid="" w0 w1
		tk0=$(awk -v t="$tid" '$1 == t {print $2}' "$RAW_DIR/$name.tasks1")
		tcpu=$(awk -v t="$tid" '$1 == t {print $4}' "$RAW_DIR/$name.tasks1")
		w0=$(date +%s%N)
		if [ "$PERF_OK" = yes ] && [ -n "$tid" ]; then
			perf stat -x, -e cycles -t "$tid" -o "$RAW_DIR/$name.perf" -- sleep "$PERF_SECS" >/dev/null 2>&1 &
			perfpid=$!
		fi
		# Memory mid-run, in the middle of the perf window.
		sleep "$(awk -v s="$PERF_SECS" 'BEGIN {print s / 2}')"
		R_RSS=$(awk '/^VmRSS:/ {print $2}' /proc/"$pid"/status 2>/dev/null)
		R_HUGE=$(awk '/^HugetlbPages:/ {print $2}' /proc/"$pid"/status 2>/dev/null)
		local memd
		memd=$(awk '/^(RssAnon|RssFile|RssShmem|VmHWM):/ {printf "%s%s %s kB", sep, $1, $2; sep = ", "}' /proc/"$pid"/status 2>/dev/null)
		if [ -n "$perfpid" ]; then
			wait "$perfpid"
		else
			sleep "$(awk -v s="$PERF_SECS" 'BEGIN {print s / 2}')"
		fi
		w1=$(date +%s%N)
		tk1=$(awk -v t="$tid" '$1 == t {print $2}' <(task_ticks "$pid"))
		# End of run: DPDK is stopped DUR s after forwarding began; rdk stops by itself.
		if [ "$impl" = dpdk ]; then
			sleep_until "$(awk -v t="$fwd0" -v d="$DUR" 'BEGIN {printf "%.3f", t + d + 0.3}')"
			stop_pid "$pid" INT
			rc=0
		else
			for _ in $(seq 1 $((DUR * 10 + 300))); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			if kill -0 "$pid" 2>/dev/null; then
				stop_pid "$pid" TERM
				rc=124
			else
				wait "$pid"
				rc=$?
			fi
		fi
		[ -n "$gpid" ] && stop_pid "$gpid" TERM
		echo "# exit: $rc" >>"$logf"
		wait "$MONITOR_PID" 2>/dev/null
		local fg
		fg=$(foreign_summary "$RAW_DIR/$name.foreign")
		echo "# foreign_cpu $fg" >>"$logf"

		if [ "${FIELD[$case]}" = tx ]; then
			R_MPPS=$(mpps_of "$logf" --warmup "$WARMUP" --field tx)
		else
			# With a generator: only the seconds in which traffic flowed (the anchors' --active).
			R_MPPS=$(mpps_of "$logf" --warmup "$WARMUP" --field rx ${GEN[$case]:+--active})
		fi
		local nsamp
		nsamp=$(pps "$logf" --warmup "$WARMUP" --field "${FIELD[$case]}" | tail -1 | sed -n 's/.*samples \([0-9]*\)).*/\1/p')
		if ! num "$R_MPPS" || [ "$(awk -v m="$R_MPPS" 'BEGIN {print (m > 0)}')" != 1 ]; then
			R_MPPS=n/a
		fi
		# cycles per packet over the perf window, at the run's median rate
		local secs cyc
		secs=$(awk -v a="$w0" -v b="$w1" 'BEGIN {print (b - a) / 1e9}')
		if [ -n "$perfpid" ]; then
			cyc=$(awk -F, '$3 ~ /^cycles/ {print $1; exit}' "$RAW_DIR/$name.perf" 2>/dev/null)
			if num "$cyc" && num "$R_MPPS"; then
				R_CPP=$(awk -v c="$cyc" -v m="$R_MPPS" -v s="$PERF_SECS" 'BEGIN {printf "%.1f", c / (m * 1e6 * s)}')
			fi
		fi
		if num "${tk0:-x}" && num "${tk1:-x}" && num "$R_MPPS"; then
			R_CPU=$(awk -v d="$((tk1 - tk0))" -v hz="$HZ_TICKS" -v s="$secs" 'BEGIN {printf "%.0f", d / hz / s * 100}')
			R_TCPP=$(awk -v d="$((tk1 - tk0))" -v hz="$HZ_TICKS" -v s="$secs" -v m="$R_MPPS" -v f="$TSC_MHZ" \
				'BEGIN {printf "%.1f", d / hz * f * 1e6 / (m * 1e6 * s)}')
		fi
		{
			echo "# fwd thread: tid $tid ($tcomm, found by $how) on CPU $tcpu, ${R_CPU}% busy over ${secs}s"
			echo "# cycles/pkt perf: $R_CPP; TSC-time estimate: $R_TCPP"
			echo "# mem: VmRSS ${R_RSS} kB ($memd) + HugetlbPages ${R_HUGE} kB"
		} >>"$logf"
		R_NOTE="load $load; foreign CPU $fg"
		[ "$rc" != 0 ] && R_NOTE="$R_NOTE; EXIT $rc"
		[ "$how" = busiest ] && [ "$impl" = rdk ] && R_NOTE="$R_NOTE; fwd thread unnamed (busiest task)"
		printf '  %-11s %-4s try %d: %9s Mpps (n=%s) | fwd tid %s %s CPU%s %s%% | cyc/pkt perf %s, tsc-est %s | mem %s kB RSS + %s kB huge | %s\n' \
			"$case" "$impl" "$try" "$(fmt3 "$R_MPPS")" "${nsamp:-0}" "$tid" "$tcomm" "$tcpu" "$R_CPU" \
			"$R_CPP" "$R_TCPP" "$R_RSS" "$R_HUGE" "$R_NOTE"
		if [ "$rc" != 0 ] || [ "$R_MPPS" = n/a ]; then
			FAILED_RUNS+=("$name (exit $rc, Mpps $R_MPPS; $logf)")
			return
		fi
		contended "foreign_cpu $fg" || return
		[ "$try" -lt "$TRIES" ] && log "$name: other processes used CPU during the run ($fg); re-running"
	done
	echo "# warning: $name measured while other processes used CPU" >>"$RAW_DIR/warnings.log"
	R_NOTE="$R_NOTE; CONTENDED"
}

# run_vhost IMPL CASE REP: a virtio-user case (testpmd_vhost_virtio.sh's run_pair): DPDK's vhost
# backend first (it owns the socket), then the frontend; the figure is the receiver's Rx rate
# over its active seconds. Sets R_MPPS R_NOTE (the per-thread figures are n/a here).
run_vhost() {
	local impl=$1 case=$2 rep=$3 dir=${VU_DIR[$2]}
	local name="${case}_${impl}_r${rep}" try cmd=() vmode vpid upid rxlog fg i
	if [ "$dir" = v2h ]; then vmode=rxonly; else vmode="txonly --txpkts=64"; fi
	if [ "$impl" = dpdk ]; then
		mapfile -t cmd < <(dpdk_args "$case")
		cmd=("$TESTPMD" --file-prefix rdkbench_vu "${cmd[@]}")
	else
		mapfile -t cmd < <(rdk_args "$case")
		cmd=("$RDK" "${cmd[@]}")
	fi
	for try in $(seq 1 "$TRIES"); do
		R_MPPS=n/a R_CPP=n/a R_TCPP=n/a R_CPU=n/a R_RSS=n/a R_HUGE=n/a R_NOTE=""
		rm -f "$VU_SOCK"
		wait_quiet
		# shellcheck disable=SC2086
		start_bg "${name}_vhost" "$TESTPMD" --no-pci --lcores 0@1,1@0 --in-memory --file-prefix rdkbench_vh \
			--vdev "net_vhost0,iface=$VU_SOCK,queues=1" -- --forward-mode=$vmode \
			--port-topology=loop --nb-cores=1 --auto-start --stats-period=1 $MB
		vpid=$BG_PID
		STARTED+=("$vpid")
		for i in $(seq 1 80); do [ -S "$VU_SOCK" ] && break; sleep 0.25; done
		start_bg "$name" "${cmd[@]}"
		upid=$BG_PID
		STARTED+=("$upid")
		foreign_monitor "$upid" "$RAW_DIR/$name.foreign" "$vpid"
		sleep "$((DUR + 2))"
		# The monitor stops before the programs do: a partner gone mid-second would count
		# its whole CPU time as someone else's.
		kill "$MONITOR_PID" 2>/dev/null
		# rdk-testpmd stops by itself after --duration; its exit status is its verdict
		# (non-zero on an error or a leaked mbuf), as run_one checks it.
		local rc=0
		if [ "$impl" = rdk ]; then
			for i in $(seq 1 300); do kill -0 "$upid" 2>/dev/null || break; sleep 0.1; done
			if kill -0 "$upid" 2>/dev/null; then rc=124; else wait "$upid"; rc=$?; fi
		fi
		if [ "$dir" = v2h ]; then
			stop_pid "$upid" TERM; sleep 1; stop_pid "$vpid" TERM
			rxlog="$RAW_DIR/${name}_vhost.log"
		else
			stop_pid "$vpid" TERM; sleep 1; stop_pid "$upid" TERM
			rxlog="$RAW_DIR/$name.log"
		fi
		wait "$MONITOR_PID" 2>/dev/null
		fg=$(foreign_summary "$RAW_DIR/$name.foreign")
		R_MPPS=$(mpps_of "$rxlog" --warmup "$WARMUP" --field rx --active)
		num "$R_MPPS" && [ "$(awk -v m="$R_MPPS" 'BEGIN {print (m > 0)}')" = 1 ] || R_MPPS=n/a
		R_NOTE="foreign CPU $fg"
		printf '  %-18s %-4s try %d: %9s Mpps received by the %s | %s\n' "$case" "$impl" "$try" \
			"$(fmt3 "$R_MPPS")" "$([ "$dir" = v2h ] && echo "vhost side" || echo "frontend")" "$R_NOTE"
		if [ "$rc" != 0 ] || [ "$R_MPPS" = n/a ]; then
			FAILED_RUNS+=("$name (exit $rc, Mpps $R_MPPS; $rxlog)")
			return
		fi
		contended "foreign_cpu $fg" || return
		[ "$try" -lt "$TRIES" ] && log "$name: other processes used CPU during the run ($fg); re-running"
	done
	R_NOTE="$R_NOTE; CONTENDED"
}

# ---------------------------------------------------------------------------------------------
echo "== rdk-testpmd vs dpdk-testpmd: same run, same CPUs =="
echo "date: $(date -Is)  host: $(uname -r)  cpu: $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}') x $(nproc)  TSC ${TSC_MHZ:-?} MHz"
echo "load at start: $(cat /proc/loadavg)  (busy now: $(cpu_busy_pct)% of all CPUs)"
echo "dpdk: $(dpkg-query -W -f='${Version}' dpdk 2>/dev/null) ($(command -v "$TESTPMD"))"
echo "rdk: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo "+dirty") ($RDK)"
echo "DUR=${DUR}s REPS=$REPS TRIES=$TRIES QUIET_WAIT=${QUIET_WAIT}s FOREIGN_MAX=${FOREIGN_MAX:-25}% warm-up samples dropped: $WARMUP  hugepages free: $HFREE"
if [ "$PERF_OK" = yes ]; then
	echo "perf: counts cycles; perf stat -e cycles -t <fwd thread> -- sleep $PERF_SECS, from ~$(awk -v p="$PRE" 'BEGIN {print 1 + p}') s into forwarding"
else
	echo "perf: skipped ($PERF_WHY); shown instead: 'tsc-est' = fwd thread CPU time x TSC rate / packets"
	echo "      (assumes core clock = TSC; for a thread busy 100% it is TSC Hz / pps, i.e. the rate restated, not a counter)"
fi
# (rdk_args is mostly called in subshells; call it here once so the dropped flags are known)
for c in "${CASES[@]}"; do rdk_args "$c" >/dev/null; done
[ -n "$DROPPED_FLAGS" ] && echo "rdk-testpmd does not take (not in its --help), so not passed:$DROPPED_FLAGS"
echo "logs: $RAW_DIR"
for c in "${CASES[@]}"; do
	echo "  $c: DPDK: $TESTPMD $(dpdk_args "$c" | tr '\n' ' ')"
	echo "  $c: rdk : $(basename "$RDK") $(rdk_args "$c" | tr '\n' ' ')"
done
echo
echo "== runs =="
for rep in $(seq 1 "$REPS"); do
	if [ $((rep % 2)) = 1 ]; then ORDER=(dpdk rdk); else ORDER=(rdk dpdk); fi
	echo "-- repetition $rep/$REPS (order: ${ORDER[*]})"
	for c in "${CASES[@]}"; do
		for impl in "${ORDER[@]}"; do
			if [ -n "${VU_DIR[$c]:-}" ]; then
				run_vhost "$impl" "$c" "$rep"
			else
				run_one "$impl" "$c" "$rep"
			fi
			k="$c,$impl"
			MPPS[$k]="${MPPS[$k]:-} $R_MPPS"
			CPP[$k]="${CPP[$k]:-} $R_CPP"
			TCPP[$k]="${TCPP[$k]:-} $R_TCPP"
			MEMRSS[$k]="${MEMRSS[$k]:-} $R_RSS"
			MEMHUGE[$k]="${MEMHUGE[$k]:-} $R_HUGE"
			case "$R_NOTE" in *CONTENDED*) RUNNOTE[$c]="contended" ;; esac
		done
	done
done

# ---------------------------------------------------------------------------------------------
echo
echo "== results (median over $REPS repetition(s); Mpps: higher is better; cycles/pkt: lower is better) =="
printf '%-12s %10s %10s %8s %8s  %13s %13s  %13s %13s\n' case "rdk Mpps" "DPDK Mpps" rdk/DPDK target \
	"rdk cyc/pkt" "DPDK cyc/pkt" "rdk tsc-est" "DPDK tsc-est"
declare -A SUMLINE
RC=0
for c in "${CASES[@]}"; do
	# shellcheck disable=SC2086
	{
		rm_=$(median ${MPPS[$c,rdk]})
		dm_=$(median ${MPPS[$c,dpdk]})
		rc_=$(median ${CPP[$c,rdk]})
		dc_=$(median ${CPP[$c,dpdk]})
		rt_=$(median ${TCPP[$c,rdk]})
		dt_=$(median ${TCPP[$c,dpdk]})
	}
	r=$(ratio "$rm_" "$dm_")
	tg=${TARGET[$c]}
	printf '%-12s %10s %10s %8s %8s  %13s %13s  %13s %13s\n' "$c" "$(fmt3 "$rm_")" "$(fmt3 "$dm_")" "$r" \
		"${tg:+>= $tg}" "$(fmt1 "$rc_")" "$(fmt1 "$dc_")" "$(fmt1 "$rt_")" "$(fmt1 "$dt_")"
	if [ "$r" = n/a ]; then
		verdict="FAIL (no figure)"
		RC=1
	elif [ -n "$tg" ]; then
		if awk -v r="$r" -v t="$tg" 'BEGIN {exit !(r >= t)}'; then verdict="PASS"; else verdict="MISS"; fi
		verdict="$verdict (target >= $tg)"
	else
		verdict="report only"
	fi
	cy="cycles/pkt rdk $(fmt1 "$rc_") DPDK $(fmt1 "$dc_")"
	[ "$PERF_OK" = yes ] || cy="cycles/pkt n/a (perf unsupported); tsc-est rdk $(fmt1 "$rt_") DPDK $(fmt1 "$dt_")"
	SUMLINE[$c]="SUMMARY $c: rdk $(fmt3 "$rm_") Mpps, DPDK $(fmt3 "$dm_") Mpps, ratio $r: $verdict; $cy${RUNNOTE[$c]:+; measured under contention}"
done
[ "$PERF_OK" = yes ] || echo "(cyc/pkt columns n/a: $PERF_WHY)"

# Memory, when null_io ran: same --total-num-mbufs=32768 for both.
MEMLINE=""
if [[ " ${CASES[*]} " == *" null_io "* ]]; then
	# Memory, null_io: same --total-num-mbufs=32768 for both.
	# shellcheck disable=SC2086
	{
		rr=$(median ${MEMRSS[null_io,rdk]:-})
		rh=$(median ${MEMHUGE[null_io,rdk]:-})
		dr=$(median ${MEMRSS[null_io,dpdk]:-})
		dh=$(median ${MEMHUGE[null_io,dpdk]:-})
	}
	echo
	if num "$rr" && num "$rh" && num "$dr" && num "$dh"; then
		rt=$(awk -v a="$rr" -v b="$rh" 'BEGIN {print a + b}')
		dt=$(awk -v a="$dr" -v b="$dh" 'BEGIN {print a + b}')
		mr=$(ratio "$rt" "$dt")
		mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}'; }
		echo "memory, null_io, --total-num-mbufs=32768 (VmRSS + HugetlbPages mid-run):"
		echo "  rdk : $(mib "$rt") = VmRSS $(mib "$rr") + HugetlbPages $(mib "$rh")"
		echo "  DPDK: $(mib "$dt") = VmRSS $(mib "$dr") + HugetlbPages $(mib "$dh")"
		echo "  rdk/DPDK: $mr (target <= 1.0)"
		if awk -v a="$rt" -v b="$dt" 'BEGIN {exit !(a <= b)}'; then mv=PASS; else mv=MISS; fi
		MEMLINE="SUMMARY null_io memory: rdk $(mib "$rt"), DPDK $(mib "$dt"), ratio $mr: $mv (target rdk <= DPDK)"
	else
		MEMLINE="SUMMARY null_io memory: FAIL (not sampled)"
		RC=1
	fi
	for impl in rdk dpdk; do
		sed -n "s/^# mem: /  $impl rep 1: /p" "$RAW_DIR/null_io_${impl}_r1.log" 2>/dev/null
	done
	grep -h "mbufs in" "$RAW_DIR"/null_io_rdk_r1.log 2>/dev/null | sed 's/^/  rdk says: /'
fi

if [ "${#FAILED_RUNS[@]}" -gt 0 ]; then
	echo
	echo "runs without a figure:"
	printf '  %s\n' "${FAILED_RUNS[@]}"
	RC=1
fi
echo "load at end: $(cat /proc/loadavg)"
echo
for c in "${CASES[@]}"; do echo "${SUMLINE[$c]}"; done
[ -n "$MEMLINE" ] && echo "$MEMLINE"
exit "$RC"
