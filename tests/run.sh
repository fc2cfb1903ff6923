#!/usr/bin/env bash
# rdk's whole test suite: installs what the tests need, then runs every tier.
#
#   bash tests/run.sh            # everything
#   STEPS="unit miri" bash tests/run.sh   # a subset (names below)
#
# Tiers: lint (fmt, clippy, doc), nostd (x86_64-unknown-none builds), unit (cargo test of the
# whole workspace, as root: the os-linux tests use hugepages), checked (rdk-core with its checked
# mempool), miri (rdk-core under Miri), loom (the ring's loom models), bench (benchmark smoke:
# rdk and DPDK in the same run, quick mode), vm (the QEMU lab guest: builds both guest
# variants, boots each once with the os-linux vfio_guest test binary, then once more with
# rdk-pmd-af-xdp's zc_guest binary: net_af_xdp on the guest kernel's virtio_net, stock and
# rebuilt with zero-copy RX; then on the stock igb and virtio_net of a second guest whose
# kernel is Debian's 6.18, zero-copy RX and TX: 6.12's igb has no AF_XDP zero-copy at all;
# every boot also runs copy mode, and checks TX checksum offloads at the peer in each mode).
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
	bash examples/bench/testpmd_vs_dpdk.sh --quick || return 1
}

# vm_boot CACHE FILTER RUN-GUEST-ARGS... : boots the lab guest once with $VM_BIN (a test binary,
# or a payload script that passes its arguments on to one) filtered to FILTER; fails unless libtest passed at least one test and none
# skipped (a skip inside the lab means the guest is not what the test needs).
vm_boot() {
	local cache=$1 filter=$2 out rc try
	shift 2
	# A whole guest run takes 5-20 s. Under TCG the guest has hung once (its kernel's virtio
	# peer stuck in TX timeouts during the igb rebind test), and QEMU 10.0 itself has aborted
	# on an internal assertion (`iotlb_to_section: Assertion ... failed`, during the guest's
	# boot, with the intel-iommu; 2 of about 40 boots): a timed-out boot (124) or a QEMU
	# abort (qemu rc=134) is said and tried once more, any other failure is final.
	for try in 1 2; do
		out=$("$VM_LAB/run-guest.sh" --cache "$cache" --timeout 150 "$@" \
			"$VM_BIN" --test-threads=1 "$filter" 2>&1)
		rc=$?
		[ $try = 1 ] || break
		if [ $rc = 124 ]; then
			echo "$out" | grep -E '^test ' | tail -3
			echo "vm_boot: the guest timed out (TCG hang?); booting it once more"
		elif [ $rc = 125 ] && echo "$out" | grep -q '(qemu rc=134)'; then
			echo "$out" | grep -E '^qemu-system-x86_64: .*Assertion'
			echo "vm_boot: QEMU aborted; booting it once more"
		else
			break
		fi
	done
	echo "$out" | grep -E '^(test |vmlab: qemu|.*SKIPPED|.*panicked|thread |== zc_guest|\[zc_guest\] (bind mode|kernel:|kernel view|rdk -> peer|peer -> rdk|bulk|checksum offload|.*xsk-zerocopy))' | head -80
	[ $rc = 0 ] || { echo "$out" | tail -30; return 1; }
	echo "$out" | grep -q SKIPPED && return 1
	echo "$out" | grep -Eq 'test result: ok\. [1-9][0-9]* passed' || return 1
}

# test_bin PACKAGE TEST : builds the integration test TEST of PACKAGE (release, no run) and
# prints its executable.
test_bin() {
	local exe
	exe=$(cargo test --release -p "$1" --test "$2" --no-run --message-format=json 2>/dev/null |
		python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$2")
	[ -x "$exe" ] || { echo "could not build the $2 test binary" >&2; return 1; }
	echo "$exe"
}

# xsk_virtio_net SRC-CACHE OUT-DIR : prints OUT-DIR/virtio_net-xsk-KVER.ko, building it once:
# the guest kernel's own virtio_net.c (from the linux-source deb the no-IOMMU guest build
# fetched, with the linux-headers it installed) with its AF_XDP zero-copy receive path
# switched on. Linux 6.12 has that path but leaves it off: the driver does not advertise
# NETDEV_XDP_ACT_XSK_ZEROCOPY, and its receive queues are not in premapped mode (reverted
# before 6.12), which the path needs to hand the device the pool's DMA addresses. 6.13
# turned both on and added zero-copy TX, which 6.12 lacks. Both edits are checked to apply.
xsk_virtio_net() {
	local src=$1 out=$2 kver sdeb b ko
	kver=$(sed -n 's/^kernel_release: //p' "$src/manifest.txt")
	ko=$out/virtio_net-xsk-$kver.ko
	[ -f "$ko" ] && { echo "$ko"; return 0; }
	sdeb=$(ls "$src"/debs/linux-source-*_all.deb 2>/dev/null | head -1)
	[ -n "$kver" ] && [ -f "$sdeb" ] && [ -d "/usr/src/linux-headers-$kver" ] || {
		echo "xsk_virtio_net: need $src/manifest.txt, the linux-source deb in $src/debs and" \
			"linux-headers-$kver (VMLAB_NOIOMMU=1 build-guest.sh $src provides them)" >&2
		return 1
	}
	b=$(mktemp -d)
	dpkg-deb --fsys-tarfile "$sdeb" | tar -x -O --wildcards './usr/src/linux-source-*.tar.xz' |
		tar -xJ -C "$b" --strip-components=3 --wildcards '*/drivers/net/virtio_net.c' || return 1
	python3 - "$b/virtio_net.c" <<'PY' || { rm -rf "$b"; return 1; }
import sys
p = sys.argv[1]
s = open(p).read()
edits = [
    ("\tdev->xdp_features = NETDEV_XDP_ACT_BASIC | NETDEV_XDP_ACT_REDIRECT;\n",
     "\tdev->xdp_features = NETDEV_XDP_ACT_BASIC | NETDEV_XDP_ACT_REDIRECT |\n"
     "\t\t\t    NETDEV_XDP_ACT_XSK_ZEROCOPY;\n"),
    ("\tret = virtnet_find_vqs(vi);\n\tif (ret)\n\t\tgoto err_free;\n",
     "\tret = virtnet_find_vqs(vi);\n\tif (ret)\n\t\tgoto err_free;\n\n"
     "\t/* rdk test build: premapped receive queues (the xsk path passes DMA addresses) */\n"
     "\tif (vi->mergeable_rx_bufs || !vi->big_packets) {\n"
     "\t\tint q;\n\n"
     "\t\tfor (q = 0; q < vi->max_queue_pairs; q++)\n"
     "\t\t\tif (!virtqueue_set_dma_premapped(vi->rq[q].vq))\n"
     "\t\t\t\tvi->rq[q].do_dma = true;\n"
     "\t}\n"),
]
for old, new in edits:
    if s.count(old) != 1:
        sys.exit("virtio_net.c changed: cannot apply the rdk test edit at " + old.strip()[:40])
    s = s.replace(old, new)
open(p, "w").write(s)
PY
	printf 'obj-m := virtio_net.o\n' >"$b/Kbuild"
	mkdir -p "$out"
	make -s -C "/usr/src/linux-headers-$kver" M="$b" modules >&2 &&
		strip --strip-debug "$b/virtio_net.ko" -o "$ko"
	local rc=$?
	rm -rf "$b"
	[ $rc = 0 ] && echo "$ko"
}

# xsk_diag_ko CACHE : prints CACHE/xsk_diag.ko, the guest kernel's xsk_diag module
# (decompressed from the kernel tree build-guest.sh unpacked), which the zc_guest payload loads
# so the test can read the kernel's own view of each AF_XDP bind.
xsk_diag_ko() {
	local kver ko=$1/xsk_diag.ko
	[ -f "$ko" ] && { echo "$ko"; return 0; }
	kver=$(sed -n 's/^kernel_release: //p' "$1/manifest.txt")
	xz -dc "$1/kernel-$kver/lib/modules/$kver/kernel/net/xdp/xsk_diag.ko.xz" >"$ko.tmp" &&
		mv "$ko.tmp" "$ko" && echo "$ko"
}

# zc_guest_kernel SRC-CACHE OUT-CACHE : builds OUT-CACHE, a second lab guest for the zero-copy
# TX run. Linux 6.12's igb has no AF_XDP zero-copy (igb_xsk.c came in 6.14), nor has its
# virtio_net zero-copy TX (6.13), so this guest's kernel is Debian's newest 6.18 from
# trixie-backports: the last series Debian ships as one linux-image deb, the layout
# build-guest.sh unpacks (from 6.19 on it is split into linux-binary and linux-modules). The
# deb is only downloaded, from the archive the host's own bookworm source names, through a
# private apt configuration in OUT-CACHE/apt (the host's sources stay as they are); busybox
# comes from SRC-CACHE. Once built, the kernel package named in OUT-CACHE's manifest is
# reused without asking the archive.
zc_guest_kernel() {
	local src=$1 out=$2 conf kpkg uri
	conf=$out/apt/apt.conf
	mkdir -p "$out/apt/lists/partial" "$out/apt/cache/archives/partial" "$out/apt/parts" "$out/debs"
	uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Created-By: Packages' |
		awk '$2 == "bookworm" {print $1; exit}')
	[ -n "$uri" ] || { echo "zc_guest_kernel: the host's apt sources name no bookworm archive" >&2; return 1; }
	printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s trixie-backports main\n' \
		"$uri" >"$out/apt/sources.list"
	printf 'Dir::Etc::sourcelist "%s";\nDir::Etc::sourceparts "%s";\nDir::State::Lists "%s";\nDir::Cache "%s";\nDir::State::status "/dev/null";\n' \
		"$out/apt/sources.list" "$out/apt/parts" "$out/apt/lists" "$out/apt/cache" >"$conf"
	kpkg=$(sed -n 's/^kernel_pkg: \([^ ]*\) .*/\1/p' "$out/manifest.txt" 2>/dev/null)
	if [ -z "$kpkg" ]; then
		APT_CONFIG=$conf apt-get update -qq || return 1
		kpkg=$(APT_CONFIG=$conf apt-cache search --names-only '^linux-image-6\.18\.[0-9]+\+deb13-amd64$' |
			awk '{print $1}' | sort -V | tail -1)
		[ -n "$kpkg" ] || { echo "zc_guest_kernel: no linux-image-6.18.*+deb13-amd64 in trixie-backports" >&2; return 1; }
	fi
	cp "$src"/debs/busybox-static_*.deb "$out/debs/" || return 1
	APT_CONFIG=$conf VMLAB_NO_INSTALL=1 VMLAB_KPKG=$kpkg "$VM_LAB/build-guest.sh" "$out" >/dev/null
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
		VMLAB_NOIOMMU=1 "$VM_LAB/build-guest.sh" "$cache-noiommu" &&
		zc_guest_kernel "$cache" "$cache-zc"; } >"$blog" 2>&1; then
		tail -20 "$blog"
		rm -f "$blog"
		return 1
	fi
	rm -f "$blog"
	VM_BIN=$(test_bin rdk-os-linux vfio_guest) || return 1
	local zc_bin xsk_ko diag diag_zc
	zc_bin=$(test_bin rdk-pmd-af-xdp zc_guest) || return 1
	xsk_ko=$(xsk_virtio_net "$cache-noiommu" "$cache-xsk") || return 1
	diag=$(xsk_diag_ko "$cache") && diag_zc=$(xsk_diag_ko "$cache-zc") || return 1
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
		PATH="$shim:$PATH" vm_boot "$cache-noiommu" noiommu_ --noiommu --nics e1000e,virtio --peer virtio &&
		VM_BIN=$ROOT/tests/vm/zc_guest.sh vm_boot "$cache" zc_guest_virtio --nics virtio --peer virtio \
			--file "$zc_bin:/payload/zc_guest" --file "$xsk_ko:/payload/virtio_net-xsk.ko" \
			--file "$diag:/payload/xsk_diag.ko" &&
		VM_BIN=$ROOT/tests/vm/zc_guest.sh vm_boot "$cache-zc" zc_guest --nics igb,virtio --peer virtio \
			--file "$zc_bin:/payload/zc_guest" --file "$diag_zc:/payload/xsk_diag.ko"
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
