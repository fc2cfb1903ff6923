//! Kernel network interfaces as the host PMDs (TAP, AF_PACKET, AF_XDP) see them: index,
//! flags (up, running, promiscuous, all-multicast), MAC address and MTU, through the classic
//! `SIOC*` ioctls on a datagram socket of the caller's network namespace.
#![allow(unsafe_code)] // ioctl on a `struct ifreq`.

use nix::errno::Errno;
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Why an interface operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetIfError {
    /// The name is empty, too long (15 bytes at most) or contains a NUL.
    BadName {
        /// The name given.
        name: String,
    },
    /// No interface of that name in this network namespace.
    NotFound {
        /// The name.
        name: String,
    },
    /// The caller lacks CAP_NET_ADMIN.
    Permission {
        /// What was attempted.
        op: &'static str,
    },
    /// The kernel refused for another reason.
    Os {
        /// What was attempted.
        op: &'static str,
        /// The interface.
        name: String,
        /// errno.
        errno: Errno,
    },
}

impl fmt::Display for NetIfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetIfError::BadName { name } => write!(
                f,
                "bad interface name {name:?}: use 1 to 15 bytes, no NUL, no '/' or whitespace"
            ),
            NetIfError::NotFound { name } => write!(
                f,
                "interface {name} not found in this network namespace; check `ip link` (or \
                 the namespace the program runs in)"
            ),
            NetIfError::Permission { op } => write!(
                f,
                "{op}: permission denied; run as root or grant CAP_NET_ADMIN"
            ),
            NetIfError::Os { op, name, errno } => write!(f, "{op} on {name} failed: {errno}"),
        }
    }
}

impl std::error::Error for NetIfError {}

impl NetIfError {
    /// The ethdev error a host PMD reports for this failure of operation `op`.
    pub fn to_eth(&self, op: &'static str) -> rdk_core::ethdev::EthError {
        let (text, code) = match self {
            NetIfError::NotFound { .. } => (
                "interface not found in this network namespace (deleted?); check `ip link`",
                0,
            ),
            NetIfError::Permission { .. } => {
                ("permission denied: run as root or grant CAP_NET_ADMIN", 0)
            }
            NetIfError::BadName { .. } => ("bad interface name: use 1 to 15 bytes", 0),
            NetIfError::Os { errno, .. } => ("the kernel refused", *errno as i32),
        };
        rdk_core::ethdev::EthError::Device {
            op,
            reason: rdk_core::ethdev::DeviceReason { text, code },
        }
    }
}

/// Interface flags rdk reads and sets (`IFF_*`).
pub mod flags {
    /// Administratively up.
    pub const UP: u32 = libc::IFF_UP as u32;
    /// Operationally up (carrier).
    pub const RUNNING: u32 = libc::IFF_RUNNING as u32;
    /// Receives every frame.
    pub const PROMISC: u32 = libc::IFF_PROMISC as u32;
    /// Receives every multicast frame.
    pub const ALLMULTI: u32 = libc::IFF_ALLMULTI as u32;
}

/// Checks an interface name and returns it as the kernel's 16-byte field.
pub fn ifname(name: &str) -> Result<[libc::c_char; libc::IFNAMSIZ], NetIfError> {
    let ok = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && !name
            .bytes()
            .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace());
    if !ok {
        return Err(NetIfError::BadName {
            name: name.to_string(),
        });
    }
    let mut out = [0 as libc::c_char; libc::IFNAMSIZ];
    for (d, s) in out.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(out)
}

/// One interface of the caller's network namespace, found by name at [`NetIf::open`] and from
/// then on followed by its index: the kernel's identity of the device the PMDs' sockets and
/// XDP program are bound to. A rename does not lose it, and a different interface that takes
/// the old name is never the one changed (each call looks up the current name of the index).
#[derive(Debug)]
pub struct NetIf {
    name: String,
    index: u32,
    sock: OwnedFd,
}

impl NetIf {
    /// Opens `name`; fails with [`NetIfError::NotFound`] if it does not exist.
    pub fn open(name: &str) -> Result<Self, NetIfError> {
        let raw = ifname(name)?;
        // SAFETY: socket(2) with constant arguments; the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(NetIfError::Os {
                op: "socket(AF_INET)",
                name: name.to_string(),
                errno: Errno::last(),
            });
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut me = Self {
            name: name.to_string(),
            index: 0,
            sock,
        };
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
        r.ifr_name = raw;
        me.ioctl("SIOCGIFINDEX", libc::SIOCGIFINDEX as _, &mut r)?;
        // SAFETY: SIOCGIFINDEX filled the ifindex member.
        me.index = unsafe { r.ifr_ifru.ifru_ifindex } as u32;
        Ok(me)
    }

    /// Whether an interface of that name exists in this namespace.
    pub fn exists(name: &str) -> bool {
        Self::open(name).is_ok()
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A request naming the interface by its current name, looked up from its index
    /// (`SIOCGIFNAME`): [`NetIfError::NotFound`] once that index is gone.
    fn request(&self) -> Result<libc::ifreq, NetIfError> {
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
        r.ifr_ifru.ifru_ifindex = self.index as libc::c_int;
        self.ioctl("SIOCGIFNAME", libc::SIOCGIFNAME as _, &mut r)?;
        // The kernel wrote a NUL-terminated name of at most IFNAMSIZ - 1 bytes into ifr_name;
        // only that member is kept.
        let name = r.ifr_name;
        // SAFETY: as above.
        let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
        r.ifr_name = name;
        Ok(r)
    }

    fn ioctl(
        &self,
        op: &'static str,
        req: libc::c_ulong,
        r: &mut libc::ifreq,
    ) -> Result<(), NetIfError> {
        // SAFETY: every SIOC* request used here reads or writes one `struct ifreq`, which `r` is.
        let rc = unsafe { libc::ioctl(self.sock.as_raw_fd(), req as _, r as *mut libc::ifreq) };
        if rc == 0 {
            return Ok(());
        }
        Err(match Errno::last() {
            Errno::ENODEV | Errno::ENXIO => NetIfError::NotFound {
                name: self.name.clone(),
            },
            Errno::EPERM | Errno::EACCES => NetIfError::Permission { op },
            errno => NetIfError::Os {
                op,
                name: self.name.clone(),
                errno,
            },
        })
    }

    /// The interface's name now (it may have been renamed since [`NetIf::open`]).
    pub fn current_name(&self) -> Result<String, NetIfError> {
        let r = self.request()?;
        let b: Vec<u8> = r
            .ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// The interface index.
    pub fn index(&self) -> Result<u32, NetIfError> {
        self.request()?;
        Ok(self.index)
    }

    /// The flags ([`flags`]).
    pub fn flags(&self) -> Result<u32, NetIfError> {
        let mut r = self.request()?;
        self.ioctl("SIOCGIFFLAGS", libc::SIOCGIFFLAGS as _, &mut r)?;
        // SAFETY: SIOCGIFFLAGS filled the flags member.
        Ok(unsafe { r.ifr_ifru.ifru_flags } as u16 as u32)
    }

    /// Sets (`on`) or clears the flags in `mask`, leaving the others.
    pub fn set_flags(&self, mask: u32, on: bool) -> Result<(), NetIfError> {
        let cur = self.flags()?;
        let new = if on { cur | mask } else { cur & !mask };
        if new == cur {
            return Ok(());
        }
        let mut r = self.request()?;
        r.ifr_ifru.ifru_flags = new as u16 as libc::c_short;
        self.ioctl("SIOCSIFFLAGS", libc::SIOCSIFFLAGS as _, &mut r)
    }

    /// Whether the interface is up and has carrier.
    pub fn is_running(&self) -> Result<bool, NetIfError> {
        let f = self.flags()?;
        Ok(f & flags::UP != 0 && f & flags::RUNNING != 0)
    }

    /// The MAC address.
    pub fn mac(&self) -> Result<[u8; 6], NetIfError> {
        let mut r = self.request()?;
        self.ioctl("SIOCGIFHWADDR", libc::SIOCGIFHWADDR as _, &mut r)?;
        // SAFETY: SIOCGIFHWADDR filled the hwaddr member.
        let sa = unsafe { r.ifr_ifru.ifru_hwaddr };
        let mut mac = [0u8; 6];
        for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
            *d = *s as u8;
        }
        Ok(mac)
    }

    /// Sets the MAC address (the interface may have to be down for some drivers; TAP and veth
    /// accept it up).
    pub fn set_mac(&self, mac: [u8; 6]) -> Result<(), NetIfError> {
        let mut r = self.request()?;
        // SAFETY: writing plain data into the union's hwaddr member.
        unsafe {
            r.ifr_ifru.ifru_hwaddr.sa_family = libc::ARPHRD_ETHER;
            for (d, s) in r.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(mac) {
                *d = s as libc::c_char;
            }
        }
        self.ioctl("SIOCSIFHWADDR", libc::SIOCSIFHWADDR as _, &mut r)
    }

    /// The MTU.
    pub fn mtu(&self) -> Result<u16, NetIfError> {
        let mut r = self.request()?;
        self.ioctl("SIOCGIFMTU", libc::SIOCGIFMTU as _, &mut r)?;
        // SAFETY: SIOCGIFMTU filled the mtu member.
        Ok(unsafe { r.ifr_ifru.ifru_mtu }.clamp(0, u16::MAX as i32) as u16)
    }

    /// Sets the MTU.
    pub fn set_mtu(&self, mtu: u16) -> Result<(), NetIfError> {
        let mut r = self.request()?;
        r.ifr_ifru.ifru_mtu = mtu as libc::c_int;
        self.ioctl("SIOCSIFMTU", libc::SIOCSIFMTU as _, &mut r)
    }
}

/// The ethdev operations the Linux host PMDs (AF_PACKET, AF_XDP) run the same way on their
/// kernel interface, `None` until the port is configured. One copy so that the drivers report
/// link, MAC and MTU alike and name their errors alike.
pub mod ethdev {
    use super::{flags, NetIf, NetIfError};
    use rdk_core::ethdev::{EthError, LinkStatus, MacAddr};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Applies a port configuration's MTU to `netif`: sets `want` when given, else reads the
    /// interface's; returns the MTU the port now has. Errors name `configure`.
    pub fn configure_mtu(netif: &NetIf, want: Option<u16>) -> Result<u16, EthError> {
        match want {
            Some(mtu) => {
                netif
                    .set_mtu(mtu)
                    .map_err(|e| e.to_eth("configure (set MTU)"))?;
                Ok(mtu)
            }
            None => netif.mtu().map_err(|e| e.to_eth("configure")),
        }
    }

    /// The link: up when the interface is up and has carrier, at `speed_mbps` full duplex.
    /// An interface that vanished sets `gone` (the queues stop touching it) and is down. One
    /// that is still there clears a `gone` a queue set from a send error that only meant
    /// "down" (`ENETDOWN` while the interface was set down a moment).
    pub fn link(netif: Option<&NetIf>, gone: &AtomicBool, speed_mbps: u32) -> LinkStatus {
        let up = netif
            .map(|n| match n.is_running() {
                Ok(r) => {
                    gone.store(false, Ordering::Relaxed);
                    r
                }
                Err(NetIfError::NotFound { .. }) => {
                    gone.store(true, Ordering::Relaxed);
                    false
                }
                Err(_) => false,
            })
            .unwrap_or(false);
        LinkStatus {
            up,
            speed_mbps: if up { speed_mbps } else { 0 },
            full_duplex: up,
        }
    }

    /// The interface's MAC address; all zero before configure or when it cannot be read.
    pub fn mac_addr(netif: Option<&NetIf>) -> MacAddr {
        netif
            .and_then(|n| n.mac().ok())
            .map(MacAddr)
            .unwrap_or(MacAddr([0; 6]))
    }

    /// Sets the interface's MAC address.
    pub fn set_mac_addr(netif: Option<&NetIf>, mac: MacAddr) -> Result<(), EthError> {
        let n = netif.ok_or(EthError::NotSupported {
            op: "set_mac_addr before configure",
        })?;
        n.set_mac(mac.0).map_err(|e| e.to_eth("set_mac_addr"))
    }

    /// Sets the interface's MTU (the caller records it for its frame size).
    pub fn set_mtu(netif: Option<&NetIf>, mtu: u16) -> Result<(), EthError> {
        let n = netif.ok_or(EthError::NotSupported {
            op: "set_mtu before configure",
        })?;
        n.set_mtu(mtu).map_err(|e| e.to_eth("set_mtu"))
    }

    /// Sets or clears the interface's promiscuous flag (one switch for every user).
    pub fn set_promiscuous(netif: Option<&NetIf>, on: bool) -> Result<(), EthError> {
        let n = netif.ok_or(EthError::NotSupported {
            op: "set_promiscuous before configure",
        })?;
        n.set_flags(flags::PROMISC, on)
            .map_err(|e| e.to_eth("set_promiscuous"))
    }

    /// Sets or clears the interface's all-multicast flag (one switch for every user).
    pub fn set_allmulticast(netif: Option<&NetIf>, on: bool) -> Result<(), EthError> {
        let n = netif.ok_or(EthError::NotSupported {
            op: "set_allmulticast before configure",
        })?;
        n.set_flags(flags::ALLMULTI, on)
            .map_err(|e| e.to_eth("set_allmulticast"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(ifname("eth0").is_ok());
        assert!(ifname("abcdefghijklmno").is_ok(), "15 bytes");
        for bad in ["", "abcdefghijklmnop", "a/b", "a b", "a\0b"] {
            let e = ifname(bad).unwrap_err();
            assert!(e.to_string().contains("1 to 15 bytes"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn loopback_is_found_and_missing_names_are_not() {
        let lo = NetIf::open("lo").unwrap();
        assert!(lo.index().unwrap() >= 1);
        assert_eq!(lo.current_name().unwrap(), "lo");
        assert!(lo.flags().unwrap() & flags::UP != 0);
        assert!(lo.mtu().unwrap() >= 1500);
        let e = NetIf::open("rdk-no-such0").unwrap_err();
        assert_eq!(
            e,
            NetIfError::NotFound {
                name: "rdk-no-such0".into()
            }
        );
        assert!(e.to_string().contains("ip link"));
    }
}
