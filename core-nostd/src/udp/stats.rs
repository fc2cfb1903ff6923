//! Drop counters, one per reason.

/// Frames (or datagrams) the stack dropped, by reason. Every frame `poll` receives is either
/// delivered to a socket, answered (ARP, echo), or counted here exactly once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropStats {
    /// Shorter than an Ethernet header.
    pub eth_truncated: u64,
    /// Addressed to another MAC (neither ours nor broadcast).
    pub eth_not_for_us: u64,
    /// From a group (multicast, broadcast) or all-zero MAC address, which no station sends
    /// from: nothing is answered to it.
    pub eth_bad_src: u64,
    /// An EtherType the stack does not handle (IPv6, VLAN, …).
    pub eth_unknown_type: u64,
    /// Frames of several segments (the stack parses one-segment frames).
    pub multi_segment: u64,
    /// ARP packets that are malformed or not Ethernet/IPv4.
    pub arp_malformed: u64,
    /// ARP packets neither for us nor updating an entry we hold.
    pub arp_ignored: u64,
    /// ARP packets whose sender is no unicast neighbour on our subnet (off-link, a broadcast,
    /// multicast or loopback address, our own address, a group or zero MAC): not learnt, not
    /// answered.
    pub arp_bad_sender: u64,
    /// IPv4 shorter than its header or total length.
    pub ipv4_truncated: u64,
    /// IPv4 version other than 4.
    pub ipv4_bad_version: u64,
    /// IPv4 header length below 20 or past the buffer.
    pub ipv4_bad_header_len: u64,
    /// IPv4 total length below the header length.
    pub ipv4_bad_length: u64,
    /// IPv4 header checksum wrong.
    pub ipv4_bad_checksum: u64,
    /// IPv4 to another address.
    pub ipv4_not_for_us: u64,
    /// IPv4 from a source no host sends from (RFC 1122 3.2.1.3): a broadcast, multicast or
    /// loopback address, our own, or 0.0.0.0 to other than the limited broadcast.
    pub ipv4_bad_src: u64,
    /// IPv4 fragments (not reassembled).
    pub ipv4_fragment: u64,
    /// IPv4 protocols other than ICMP and UDP.
    pub ipv4_unknown_protocol: u64,
    /// ICMP malformed, with a bad checksum, or of a type the stack does not answer.
    pub icmp_dropped: u64,
    /// UDP shorter than its header, or whose length field runs past the IPv4 payload (Linux
    /// counts both as `InErrors`). A length field short of the payload is no error: the
    /// datagram is trimmed to it, as Linux's `udp_rcv` trims.
    pub udp_truncated: u64,
    /// UDP length field under 8 (the header's own length).
    pub udp_bad_length: u64,
    /// UDP checksum wrong (computed over the UDP length).
    pub udp_bad_checksum: u64,
    /// No socket bound to the destination port.
    pub udp_unknown_port: u64,
    /// The socket's receive queue was full.
    pub socket_queue_full: u64,
    /// Packets waiting for ARP dropped: the pending queue for that next hop was full, or the
    /// resolution timed out.
    pub arp_queue_full: u64,
    /// Replies or datagrams that could not be sent: the transmit backlog was full.
    pub tx_queue_full: u64,
    /// Replies not sent for lack of a buffer.
    pub no_mbuf: u64,
    /// Datagrams an application handed to the poller (threaded mode) that could not be sent:
    /// to port 0, too long, no route, or an mbuf without headroom or of several segments. The
    /// socket handle checks these before handing over, so this stays 0 unless a handle is
    /// misused.
    pub send_failed: u64,
    /// Datagrams for a threaded-mode socket in an mbuf another handle shares (the sender
    /// cannot be recorded in it); PMDs hand out unshared mbufs, so this stays 0 with them.
    pub shared_mbuf: u64,
}

impl DropStats {
    /// Every counter added up.
    pub fn total(&self) -> u64 {
        let f = [
            self.eth_truncated,
            self.eth_not_for_us,
            self.eth_bad_src,
            self.eth_unknown_type,
            self.multi_segment,
            self.arp_malformed,
            self.arp_ignored,
            self.arp_bad_sender,
            self.ipv4_truncated,
            self.ipv4_bad_version,
            self.ipv4_bad_header_len,
            self.ipv4_bad_length,
            self.ipv4_bad_checksum,
            self.ipv4_not_for_us,
            self.ipv4_bad_src,
            self.ipv4_fragment,
            self.ipv4_unknown_protocol,
            self.icmp_dropped,
            self.udp_truncated,
            self.udp_bad_length,
            self.udp_bad_checksum,
            self.udp_unknown_port,
            self.socket_queue_full,
            self.arp_queue_full,
            self.tx_queue_full,
            self.no_mbuf,
            self.send_failed,
            self.shared_mbuf,
        ];
        f.iter().sum()
    }
}
