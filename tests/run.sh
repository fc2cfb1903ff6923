#!/usr/bin/env bash
# rdk's whole test suite: installs what the tests need, then runs every tier.
#
#   bash tests/run.sh            # everything
#   STEPS="unit miri" bash tests/run.sh   # a subset (names below)
#
# Tiers: lint (fmt, clippy, doc), nostd (x86_64-unknown-none builds), unit (cargo test of the
# whole workspace, as root: the os-linux tests use hugepages), checked (rdk-core with its checked
# mempool), miri (rdk-core under Miri), loom (the ring's loom models), bench (benchmark smoke:
# rdk and DPDK in the same run, quick mode), vm (VFIO in the QEMU lab guest: builds both guest
# variants, boots each once with the os-linux vfio_guest test binary).
# Under CI=true a missing prerequisite (root, hugepages, DPDK) is a failure, not a skip.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
STEPS=${STEPS:-"setup lint nostd unit checked miri loom bench vm"}
export CARGO_TERM_COLOR=never
PASS=0
FAIL=0
FAILED=()

log() { echo "[$(date +%H:%M:%S)] $*"; }

# step NAME CMD... : runs one step, records pass/fail and its duration.
step() {
	local name=$1
	shift
	local t0=$SECONDS
	log "=== $name: $*"
	if "$@"; then
		PASS=$((PASS + 1))
		log "--- $name: ok ($((SECONDS - t0)) s)"
	else
		FAIL=$((FAIL + 1))
		FAILED+=("$name")
		log "--- $name: FAILED ($((SECONDS - t0)) s)"
	fi
}

want() { [[ " $STEPS " == *" $1 "* ]]; }

need_root() {
	if [ "$(id -u)" != 0 ]; then
		echo "$1 needs root (hugepages, dpdk-test)"
		[ "${CI:-}" = true ] && return 1
		return 2
	fi
}

setup() {
	local pkgs=() p
	for p in dpdk dpdk-dev pkg-config gcc libc6-dev iproute2 iputils-ping ethtool procps python3; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
	done
	if [ "${#pkgs[@]}" -gt 0 ]; then
		if [ "$(id -u)" = 0 ]; then
			log "installing Debian packages: ${pkgs[*]}"
			apt-get update -qq >/dev/null &&
				DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null || return 1
		else
			echo "missing Debian packages (${pkgs[*]}) and not root to install them"
			[ "${CI:-}" = true ] && return 1
		fi
	fi
	rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt || return 1
	rustup target list --installed | grep -qx x86_64-unknown-none || rustup target add x86_64-unknown-none || return 1
	rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal || return 1
	rustup +nightly component list --installed | grep -q '^miri' || rustup component add miri rust-src --toolchain nightly || return 1
	return 0
}

lint() {
	cargo fmt --all -- --check &&
		cargo clippy --workspace --all-targets --features rdk-core/alloc,rdk-core/checked -- -D warnings &&
		cargo clippy --workspace --all-targets -- -D warnings &&
		RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
}

nostd() {
	# The core and the no_std PMDs must build for a bare-metal target (no OS, no std).
	cargo build -q -p rdk-core --target x86_64-unknown-none &&
		cargo build -q -p rdk-core --target x86_64-unknown-none --features alloc &&
		cargo build -q -p rdk-core --target x86_64-unknown-none --features alloc,checked &&
		cargo build -q -p rdk-pmd-null -p rdk-pmd-ring --target x86_64-unknown-none
}

unit() {
	local r
	need_root "unit tests"
	r=$?
	[ $r = 1 ] && return 1
	cargo test --workspace --release
}

checked() {
	cargo test -p rdk-core --release --features alloc,checked
}

miri() {
	# Miri checks rdk-core's unsafe code for UB (aliasing, alignment, use after free, leaks).
	MIRIFLAGS="${MIRIFLAGS:-}" cargo +nightly miri test -p rdk-core --features alloc
}

loom() {
	# The loom models need their own target dir: --cfg loom changes every crate's build.
	CARGO_TARGET_DIR="$ROOT/target/loom" RUSTFLAGS="--cfg loom" \
		cargo test -p rdk-core --release --test ring_loom
}

bench() {
	local r
	need_root "bench smoke"
	r=$?
	[ $r = 1 ] && return 1
	[ $r = 2 ] && return 0
	for b in ring_perf mempool_perf intr_perf; do
		cargo run -q --release -p rdk-examples --bin "$b" -- --quick || return 1
	done
	# The main program's default run (two ring ports, io) must forward and leak nothing.
	cargo run -q --release -p rdk-examples --bin rdk-testpmd -- --duration 2 --stats-period 0 || return 1
	# UDP ping-pong over two ring ports: every round trip completes.
	cargo run -q --release -p rdk-examples --bin udp-pingpong -- --count 5000 --duration 20 || return 1
	cargo run -q --release -p rdk-examples --bin udp-pingpong -- --threaded --count 5000 --duration 20 || return 1
	# ... and over a veth pair (net_af_packet; TAPs bridged to it) next to the kernel's sockets.
	cargo run -q --release -p rdk-examples --bin udp-pingpong -- --port af_packet --count 5000 --duration 20 || return 1
	cargo run -q --release -p rdk-examples --bin udp-pingpong -- --port af_xdp --count 5000 --duration 20 || return 1
	cargo run -q --release -p rdk-examples --bin udp-pingpong -- --port tap --count 5000 --duration 20 || return 1
	# ... and over virtio-user with DPDK's vhost (dpdk-testpmd, two net_vhost ports) as the switch.
	cargo run -q --release -p rdk-examples --bin udp-pingpong -- --port virtio_user --count 5000 --duration 20 || return 1
	if [ -f examples/bench/testpmd_vs_dpdk.sh ]; then
		bash examples/bench/testpmd_vs_dpdk.sh --quick || return 1
	fi
}

# vm_boot CACHE FILTER RUN-GUEST-ARGS... : boots the lab guest once with the vfio_guest test
# binary ($VM_BIN) filtered to FILTER; fails unless libtest passed at least one test and none
# skipped (a skip inside the lab means the guest is not what the test needs).
vm_boot() {
	local cache=$1 filter=$2 out rc try
	shift 2
	# A whole guest run takes 5-20 s. Under TCG the guest has hung once (its kernel's virtio
	# peer stuck in TX timeouts during the igb rebind test): a timed-out boot (124) is said
	# and tried once more, any other failure is final.
	for try in 1 2; do
		out=$("$VM_LAB/run-guest.sh" --cache "$cache" --timeout 150 "$@" \
			"$VM_BIN" --test-threads=1 "$filter" 2>&1)
		rc=$?
		[ $rc = 124 ] && [ $try = 1 ] || break
		echo "$out" | grep -E '^test ' | tail -3
		echo "vm_boot: the guest timed out (TCG hang?); booting it once more"
	done
	echo "$out" | grep -E '^(test |vmlab: qemu|.*SKIPPED|.*panicked|thread )' | head -40
	[ $rc = 0 ] || { echo "$out" | tail -30; return 1; }
	echo "$out" | grep -q SKIPPED && return 1
	echo "$out" | grep -Eq 'test result: ok\. [1-9][0-9]* passed' || return 1
}

vm() {
	local r d
	need_root "vm tier (build-guest.sh installs QEMU; the guest runs VFIO)"
	r=$?
	[ $r = 1 ] && return 1
	[ $r = 2 ] && return 0
	VM_LAB=
	for d in "${VMLAB_DIR:-}" "$ROOT/../shared/lab/vm" "$ROOT/../../shared/lab/vm"; do
		[ -n "$d" ] && [ -x "$d/run-guest.sh" ] && VM_LAB=$(cd "$d" && pwd) && break
	done
	if [ -z "$VM_LAB" ]; then
		echo "VM lab not found (set VMLAB_DIR to the directory holding run-guest.sh)"
		[ "${CI:-}" = true ] && return 1
		return 0
	fi
	local cache=${VMLAB_CACHE:-/var/tmp/vmlab} blog
	blog=$(mktemp)
	if ! { "$VM_LAB/build-guest.sh" "$cache" &&
		VMLAB_NOIOMMU=1 "$VM_LAB/build-guest.sh" "$cache-noiommu"; } >"$blog" 2>&1; then
		tail -20 "$blog"
		rm -f "$blog"
		return 1
	fi
	rm -f "$blog"
	VM_BIN=$(cargo test --release -p rdk-os-linux --test vfio_guest --no-run \
		--message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["name"] == "vfio_guest":
        print(m["executable"])')
	[ -x "$VM_BIN" ] || { echo "could not build the vfio_guest test binary"; return 1; }
	# The no-IOMMU boot also has a transitional virtio NIC (legacy I/O BAR0 + modern caps) for
	# net_virtio's legacy transport. run-guest.sh hard-codes disable-legacy=on,iommu_platform=on
	# (and QEMU refuses iommu_platform with a legacy interface), so a qemu wrapper first on
	# PATH rewrites that for this boot only.
	local shim rc
	shim=$(mktemp -d)
	printf '#!/bin/bash\na=(); for x in "$@"; do a+=("${x//disable-legacy=on,iommu_platform=on/disable-legacy=off}"); done\nexec %q "${a[@]}"\n' \
		"$(command -v qemu-system-x86_64)" >"$shim/qemu-system-x86_64"
	chmod +x "$shim/qemu-system-x86_64"
	vm_boot "$cache" viommu_ --nics virtio,e1000e,igb --peer virtio &&
		PATH="$shim:$PATH" vm_boot "$cache-noiommu" noiommu_ --noiommu --nics e1000e,virtio --peer virtio
	rc=$?
	rm -rf "$shim"
	return $rc
}

T0=$SECONDS
for s in setup lint nostd unit checked miri loom bench vm; do
	if want "$s"; then
		step "$s" "$s"
	fi
done
log "total $((SECONDS - T0)) s"
[ "${#FAILED[@]}" -gt 0 ] && log "failed steps: ${FAILED[*]}"
echo "tiers: $PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
