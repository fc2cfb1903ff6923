#!/bin/sh
# The VM-lab guest's payload for rdk-pmd-af-xdp's zc_guest test (tests/run.sh, tier vm):
# usage: zc_guest.sh TEST-ARGS...   (run by run-guest.sh; busybox sh)
# Loads /payload/xsk_diag.ko if it was given (the kernel's view of each AF_XDP bind).
# In a boot with an igb lab NIC (tests/run.sh's Linux 6.18 guest, --nics igb,virtio): runs
# /payload/zc_guest with TEST-ARGS once, on the guest kernel's own igb and virtio_net, with
# zero-copy RX and TX required (RDK_ZC_GUEST_ZC_TX=1).
# Otherwise (the Linux 6.12 guest, --nics virtio): runs it twice on the virtio lab NIC, with
# the guest kernel's own virtio_net (which offers no AF_XDP zero-copy in Linux 6.12), then
# with /payload/virtio_net-xsk.ko, the same 6.12 driver rebuilt by tests/run.sh with its
# zero-copy receive path switched on.
bin=/payload/zc_guest
if [ -f /payload/xsk_diag.ko ]; then
	insmod /payload/xsk_diag.ko || exit 1
fi
if [ -n "${VMLAB_IGB_BDF:-}" ]; then
	echo "== zc_guest: the guest kernel's own drivers ($(uname -r)), zero-copy RX and TX required"
	RDK_ZC_GUEST_ZC_TX=1 exec "$bin" "$@"
fi
echo "== zc_guest: the guest kernel's own virtio_net"
"$bin" "$@" || exit $?
ko=/payload/virtio_net-xsk.ko
[ -f "$ko" ] || { echo "zc_guest.sh: $ko missing"; exit 1; }
echo "== zc_guest: $ko (zero-copy RX, no zero-copy TX)"
rmmod virtio_net || exit 1
insmod "$ko" || exit 1
i=0
peer=
while [ -z "$peer" ] && [ $i -lt 100 ]; do
	peer=$(ls /sys/bus/pci/devices/"$VMLAB_PEER_BDF"/virtio*/net 2>/dev/null)
	[ -n "$peer" ] || sleep 0.05
	i=$((i + 1))
done
[ -n "$peer" ] || { echo "zc_guest.sh: the peer $VMLAB_PEER_BDF has no netdev after the reload"; exit 1; }
ip link set dev "$peer" up
VMLAB_PEER_IF=$peer RDK_ZC_GUEST_RX_ONLY=1 exec "$bin" "$@"
