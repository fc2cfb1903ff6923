//! Address kinds.
//!
//! A driver juggles three kinds of address: where the CPU sees memory ([`VirtAddr`]), where a
//! device sees it through the IOMMU ([`Iova`]) and where it really is ([`PhysAddr`], which is an
//! IOVA only when there is no IOMMU or it is in pass-through). They are distinct types with no
//! `From` between them, so a virtual address can never be written into a descriptor by accident:
//! the only way from one to another is a translation that knows the mapping (a
//! [`DmaRegion`](crate::os::DmaRegion)).

use core::fmt;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name($inner);

        impl $name {
            /// The address with this numeric value.
            #[inline(always)]
            pub const fn new(value: $inner) -> Self {
                Self(value)
            }

            /// The numeric value.
            #[inline(always)]
            pub const fn get(self) -> $inner {
                self.0
            }

            /// This address plus `offset` bytes, or `None` on overflow.
            #[inline(always)]
            pub const fn checked_add(self, offset: $inner) -> Option<Self> {
                match self.0.checked_add(offset) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// This address plus `offset` bytes (wrapping; use where the range is known valid).
            #[inline(always)]
            pub const fn wrapping_add(self, offset: $inner) -> Self {
                Self(self.0.wrapping_add(offset))
            }

            /// Bytes from `base` up to this address, or `None` if this address is below `base`.
            #[inline(always)]
            pub const fn offset_from(self, base: Self) -> Option<$inner> {
                self.0.checked_sub(base.0)
            }

            /// Whether the address is a multiple of `align` (a power of two).
            #[inline(always)]
            pub const fn is_aligned(self, align: $inner) -> bool {
                self.0 & (align.wrapping_sub(1)) == 0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

address_type!(
    /// An address in this process's (or this kernel's) virtual address space.
    VirtAddr(usize),
    "VirtAddr"
);
address_type!(
    /// An I/O virtual address: what a device puts on the bus to reach memory.
    Iova(u64),
    "Iova"
);
address_type!(
    /// A physical memory address.
    PhysAddr(u64),
    "PhysAddr"
);

impl VirtAddr {
    /// The address of `ptr`.
    #[inline(always)]
    pub fn from_ptr<T: ?Sized>(ptr: *const T) -> Self {
        Self(ptr.cast::<u8>() as usize)
    }

    /// This address as a raw pointer. Dereferencing it is the caller's business.
    #[inline(always)]
    pub const fn as_ptr<T>(self) -> *mut T {
        self.0 as *mut T
    }
}

impl Iova {
    /// The IOVA that equals a physical address: correct only where the device sees physical
    /// memory directly (no IOMMU, VFIO no-IOMMU mode, or IOMMU pass-through).
    #[inline(always)]
    pub const fn from_phys_identity(pa: PhysAddr) -> Self {
        Self(pa.get())
    }

    /// The IOVA that equals a virtual address: correct only where the IOMMU was programmed with
    /// IOVA = VA (DPDK's `--iova-mode=va`).
    #[inline(always)]
    pub const fn from_virt_identity(va: VirtAddr) -> Self {
        Self(va.get() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_is_checked() {
        let a = Iova::new(0x1000);
        assert_eq!(a.checked_add(0x10), Some(Iova::new(0x1010)));
        assert_eq!(Iova::new(u64::MAX).checked_add(1), None);
        assert_eq!(Iova::new(0x1010).offset_from(a), Some(0x10));
        assert_eq!(a.offset_from(Iova::new(0x1010)), None);
        assert!(a.is_aligned(0x1000));
        assert!(!Iova::new(0x1010).is_aligned(0x20));
    }

    #[test]
    fn formatting_names_the_kind() {
        extern crate alloc;
        use alloc::format;
        assert_eq!(format!("{:?}", PhysAddr::new(0x2000)), "PhysAddr(0x2000)");
        assert_eq!(format!("{}", VirtAddr::new(0x30)), "0x30");
    }

    #[test]
    fn pointer_round_trip() {
        let x = 5u32;
        let va = VirtAddr::from_ptr(&x);
        // SAFETY: va was made from a live reference to x one line up.
        assert_eq!(unsafe { *va.as_ptr::<u32>() }, 5);
    }
}
