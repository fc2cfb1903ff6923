//! PCI function addresses (`domain:bus:device.function`, as lspci and sysfs spell them).

use core::fmt;
use core::str::FromStr;

/// The address of one PCI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddr {
    /// PCI segment (domain); 0 on most machines.
    pub domain: u16,
    /// Bus number.
    pub bus: u8,
    /// Device number, 0..=31.
    pub device: u8,
    /// Function number, 0..=7.
    pub function: u8,
}

impl PciAddr {
    /// An address from its parts, or `None` if `device > 31` or `function > 7`.
    pub const fn new(domain: u16, bus: u8, device: u8, function: u8) -> Option<Self> {
        if device > 31 || function > 7 {
            return None;
        }
        Some(Self {
            domain,
            bus,
            device,
            function,
        })
    }
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// Why a string is not a PCI address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciAddrError {
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for PciAddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad PCI address: {}; write it as DDDD:BB:dd.f or BB:dd.f in hex (e.g. 0000:01:00.0)",
            self.reason
        )
    }
}

impl core::error::Error for PciAddrError {}

fn hex<T: TryFrom<u32>>(s: &str, max_digits: usize, what: &'static str) -> Result<T, PciAddrError> {
    if s.is_empty() || s.len() > max_digits {
        return Err(PciAddrError { reason: what });
    }
    let v = u32::from_str_radix(s, 16).map_err(|_| PciAddrError { reason: what })?;
    T::try_from(v).map_err(|_| PciAddrError { reason: what })
}

impl FromStr for PciAddr {
    type Err = PciAddrError;

    /// Parses `DDDD:BB:dd.f` or `BB:dd.f` (domain 0).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (head, function) = s.rsplit_once('.').ok_or(PciAddrError {
            reason: "no '.' before the function number",
        })?;
        let mut parts = head.rsplitn(3, ':');
        let device = parts.next().unwrap_or("");
        let bus = parts.next().ok_or(PciAddrError {
            reason: "no ':' between bus and device",
        })?;
        let domain = parts.next().unwrap_or("0");
        let addr = PciAddr {
            domain: hex(domain, 4, "domain is not 1-4 hex digits")?,
            bus: hex(bus, 2, "bus is not 1-2 hex digits")?,
            device: hex(device, 2, "device is not 1-2 hex digits")?,
            function: hex(function, 1, "function is not one hex digit")?,
        };
        PciAddr::new(addr.domain, addr.bus, addr.device, addr.function).ok_or(PciAddrError {
            reason: "device must be at most 1f and function at most 7",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    extern crate alloc;

    #[test]
    fn parse_and_print() {
        let a: PciAddr = "0000:01:00.0".parse().unwrap();
        assert_eq!(a, PciAddr::new(0, 1, 0, 0).unwrap());
        assert_eq!(a.to_string(), "0000:01:00.0");
        let b: PciAddr = "1f:1f.7".parse().unwrap();
        assert_eq!(b.to_string(), "0000:1f:1f.7");
        let c: PciAddr = "abcd:ff:02.3".parse().unwrap();
        assert_eq!(
            (c.domain, c.bus, c.device, c.function),
            (0xabcd, 0xff, 2, 3)
        );
    }

    #[test]
    fn rejects_bad_addresses() {
        for s in [
            "",
            "0000:01:00",
            "01.0",
            "0000:01:20.0",
            "0000:01:00.8",
            "00000:01:00.0",
            "0000:100:00.0",
            "0000:01:00.x",
            "a:b:c:d.0",
            ":01:00.0",
        ] {
            let e = s.parse::<PciAddr>().unwrap_err();
            assert!(e.to_string().contains("0000:01:00.0"), "{s}: {e}");
        }
    }
}
