//! The mbuf cache a driver's queue keeps in front of its pool, sized so that any pool that can
//! have a cache gets one, with an error that says what to do when it cannot.

use super::{DeviceReason, EthError};
use crate::mbuf::{MbufCache, PktMbufPool};
use crate::mempool::MempoolError;

/// A cache of up to `want` mbufs of `pool` for one queue: `want` is cut to half the pool (a
/// queue should not park the whole pool in its cache) and raised to 2, the smallest cache a
/// pool makes. There is no cache-less fallback to try: a pool refuses a cache only when all its
/// cache slots are taken or it has fewer than 2 mbufs, and then it refuses every size. Errors
/// name `op`.
pub fn queue_cache(
    pool: &PktMbufPool,
    want: usize,
    op: &'static str,
) -> Result<MbufCache, EthError> {
    pool.cache(want.min(pool.size() / 2).max(2))
        .map_err(|e| no_cache(e, op))
}

/// The error for a pool that refused queue `op` a cache (`e`), saying what to do: for
/// drivers that size their caches themselves.
pub fn no_cache(e: MempoolError, op: &'static str) -> EthError {
    let text = match e {
        MempoolError::TooManyCaches => {
            "the mbuf pool has no cache slot left (every queue and core cache of it takes one); \
             give this queue a pool of its own, or drop unused queues or caches of this pool"
        }
        MempoolError::BadCacheSize { .. } => {
            "the mbuf pool has fewer than 2 mbufs, too few for a queue; create it with at least \
             as many mbufs as the queue has descriptors"
        }
        _ => "the mbuf pool refused a queue cache",
    };
    EthError::Device {
        op,
        reason: DeviceReason { text, code: 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbuf::PktMbufPoolConfig;
    use crate::mempool::MAX_CACHES;
    use crate::os::test_dma::TestDma;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    fn pool(n: usize) -> PktMbufPool {
        PktMbufPool::create(&TestDma::contiguous(), &PktMbufPoolConfig::new("qc", n)).unwrap()
    }

    #[test]
    fn small_pools_still_get_a_cache() {
        // Half of 2 or 3 is 1, below the smallest cache: the size is raised, not refused.
        for n in [2, 3, 4, 1000] {
            let c = queue_cache(&pool(n), 256, "rx_queue_setup");
            assert!(c.is_ok(), "a pool of {n}: {:?}", c.err());
        }
    }

    #[test]
    fn a_pool_without_room_for_a_cache_says_what_to_do() {
        let p = pool(256);
        let held: Vec<_> = (0..MAX_CACHES).map(|_| p.cache(2).unwrap()).collect();
        let e = queue_cache(&p, 256, "rx_queue_setup").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("rx_queue_setup failed") && text.contains("pool of its own"),
            "{text}"
        );
        drop(held);
        assert!(
            queue_cache(&p, 256, "rx_queue_setup").is_ok(),
            "slots freed"
        );
        let e = queue_cache(&pool(1), 256, "rx_queue_setup").unwrap_err();
        assert!(e.to_string().contains("fewer than 2 mbufs"), "{e}");
    }
}
