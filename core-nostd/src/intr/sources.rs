//! Interrupt sources and their callbacks, with pending-delete semantics.
//!
//! A source is keyed by whatever the OS waits on (a file descriptor on Linux, a vector number in
//! a unikernel) and has one or more callbacks. The dispatcher runs callbacks *without* holding
//! the table's lock, so a callback may register or unregister anything, itself included:
//!
//! 1. [`SourceTable::begin_dispatch`] marks the source busy and hands out its live callbacks;
//! 2. the dispatcher calls them with the lock released;
//! 3. [`SourceTable::end_dispatch`] removes callbacks unregistered meanwhile and reports whether
//!    the source is now empty (so the OS layer can stop watching it).
//!
//! Unregistering a callback of a busy source marks it pending-delete and returns
//! [`Unregistered::Deferred`]; it is not called again, and is dropped at `end_dispatch`.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

/// Identifies one registered callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallbackId(u64);

impl CallbackId {
    /// The raw id (unique per table, never reused).
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// Why a source-table operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntrError {
    /// No source with that key is registered.
    NoSuchSource,
    /// The source has no callback with that id (already unregistered?).
    NoSuchCallback,
}

impl fmt::Display for IntrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntrError::NoSuchSource => {
                write!(f, "no interrupt source with that key is registered")
            }
            IntrError::NoSuchCallback => write!(
                f,
                "the source has no callback with that id; it was unregistered already or \
                 belongs to another source"
            ),
        }
    }
}

impl core::error::Error for IntrError {}

/// What [`SourceTable::register`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The new callback's id.
    pub id: CallbackId,
    /// Whether this created the source (the OS layer must start watching its key).
    pub new_source: bool,
}

/// What [`SourceTable::unregister`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Unregistered<C> {
    /// Removed now; `source_empty` says whether the source went away with it (stop watching).
    Removed {
        /// The callback, for the caller to drop or run its cleanup.
        callback: C,
        /// Whether the source has no callbacks left and was removed.
        source_empty: bool,
    },
    /// The source is being dispatched: the callback is marked and goes at `end_dispatch`.
    Deferred,
}

#[derive(Debug)]
struct Entry<C> {
    id: CallbackId,
    cb: C,
    pending_delete: bool,
}

#[derive(Debug)]
struct Source<C> {
    entries: Vec<Entry<C>>,
    busy: bool,
}

/// The table of sources and callbacks. Not synchronised itself: the OS layer wraps it in its
/// lock and releases the lock around callback calls (see the module docs).
#[derive(Debug)]
pub struct SourceTable<K: Ord + Copy, C: Clone> {
    sources: BTreeMap<K, Source<C>>,
    next_id: u64,
}

impl<K: Ord + Copy, C: Clone> Default for SourceTable<K, C> {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`SourceTable::end_dispatch`] found.
#[derive(Debug, PartialEq, Eq)]
pub struct DispatchEnd<C> {
    /// Callbacks unregistered during the dispatch, now removed.
    pub removed: Vec<C>,
    /// Whether the source has no callbacks left and was removed (stop watching its key).
    pub source_empty: bool,
}

impl<K: Ord + Copy, C: Clone> SourceTable<K, C> {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            sources: BTreeMap::new(),
            next_id: 1,
        }
    }

    /// Number of sources.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether there are no sources.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Whether `key` is registered.
    pub fn contains(&self, key: K) -> bool {
        self.sources.contains_key(&key)
    }

    /// Live (not pending-delete) callbacks of `key`.
    pub fn callback_count(&self, key: K) -> usize {
        self.sources.get(&key).map_or(0, |s| {
            s.entries.iter().filter(|e| !e.pending_delete).count()
        })
    }

    /// Adds a callback to `key`, creating the source if needed.
    pub fn register(&mut self, key: K, cb: C) -> Registered {
        let id = CallbackId(self.next_id);
        self.next_id += 1;
        let mut new_source = false;
        let src = self.sources.entry(key).or_insert_with(|| {
            new_source = true;
            Source {
                entries: Vec::new(),
                busy: false,
            }
        });
        src.entries.push(Entry {
            id,
            cb,
            pending_delete: false,
        });
        Registered { id, new_source }
    }

    /// Removes callback `id` from `key` (or marks it, if the source is being dispatched).
    pub fn unregister(&mut self, key: K, id: CallbackId) -> Result<Unregistered<C>, IntrError> {
        let src = self.sources.get_mut(&key).ok_or(IntrError::NoSuchSource)?;
        let pos = src
            .entries
            .iter()
            .position(|e| e.id == id && !e.pending_delete)
            .ok_or(IntrError::NoSuchCallback)?;
        if src.busy {
            src.entries[pos].pending_delete = true;
            return Ok(Unregistered::Deferred);
        }
        let e = src.entries.remove(pos);
        let source_empty = src.entries.is_empty();
        if source_empty {
            self.sources.remove(&key);
        }
        Ok(Unregistered::Removed {
            callback: e.cb,
            source_empty,
        })
    }

    /// Marks `key` busy and returns its live callbacks to call (outside the lock). `None` if
    /// the source is unknown (it was removed while its event was in flight: ignore the event).
    pub fn begin_dispatch(&mut self, key: K) -> Option<Vec<(CallbackId, C)>> {
        let src = self.sources.get_mut(&key)?;
        src.busy = true;
        Some(
            src.entries
                .iter()
                .filter(|e| !e.pending_delete)
                .map(|e| (e.id, e.cb.clone()))
                .collect(),
        )
    }

    /// Marks `key` busy without handing out its callbacks: a dispatcher that must read the
    /// source first does this before the read, so that an unregistration racing with the read
    /// is [`Deferred`](Unregistered::Deferred), and takes the callbacks live after the read
    /// with [`begin_dispatch`](Self::begin_dispatch). `false` if the source is unknown.
    pub fn mark_busy(&mut self, key: K) -> bool {
        self.sources.get_mut(&key).map(|s| s.busy = true).is_some()
    }

    /// Whether callback `id` of `key` is still live: the dispatcher checks this before each
    /// call, so a callback unregistered by an earlier one in the same round is not called.
    pub fn is_live(&self, key: K, id: CallbackId) -> bool {
        self.sources
            .get(&key)
            .is_some_and(|s| s.entries.iter().any(|e| e.id == id && !e.pending_delete))
    }

    /// Ends a dispatch of `key`: drops callbacks unregistered meanwhile.
    pub fn end_dispatch(&mut self, key: K) -> DispatchEnd<C> {
        let Some(src) = self.sources.get_mut(&key) else {
            return DispatchEnd {
                removed: Vec::new(),
                source_empty: true,
            };
        };
        src.busy = false;
        let mut removed = Vec::new();
        let mut i = 0;
        while i < src.entries.len() {
            if src.entries[i].pending_delete {
                removed.push(src.entries.remove(i).cb);
            } else {
                i += 1;
            }
        }
        let source_empty = src.entries.is_empty();
        if source_empty {
            self.sources.remove(&key);
        }
        DispatchEnd {
            removed,
            source_empty,
        }
    }

    /// Removes a whole source (its key failed: the device went away). Returns its callbacks so
    /// their owners can be told. If it is being dispatched, the rest of that round is skipped
    /// (`is_live` turns false) and `end_dispatch` finds nothing.
    pub fn remove_source(&mut self, key: K) -> Result<Vec<C>, IntrError> {
        let src = self.sources.remove(&key).ok_or(IntrError::NoSuchSource)?;
        Ok(src
            .entries
            .into_iter()
            .filter(|e| !e.pending_delete)
            .map(|e| e.cb)
            .collect())
    }

    /// The registered keys.
    pub fn keys(&self) -> impl Iterator<Item = K> + '_ {
        self.sources.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type T = SourceTable<i32, &'static str>;

    #[test]
    fn register_creates_sources_once() {
        let mut t = T::new();
        let a = t.register(5, "a");
        let b = t.register(5, "b");
        assert!(a.new_source && !b.new_source);
        assert_ne!(a.id, b.id);
        assert_eq!(t.callback_count(5), 2);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn unregister_last_callback_removes_source() {
        let mut t = T::new();
        let a = t.register(5, "a").id;
        let b = t.register(5, "b").id;
        assert_eq!(
            t.unregister(5, a),
            Ok(Unregistered::Removed {
                callback: "a",
                source_empty: false
            })
        );
        assert_eq!(t.unregister(5, a), Err(IntrError::NoSuchCallback));
        assert_eq!(
            t.unregister(5, b),
            Ok(Unregistered::Removed {
                callback: "b",
                source_empty: true
            })
        );
        assert!(!t.contains(5));
        assert_eq!(t.unregister(5, b), Err(IntrError::NoSuchSource));
    }

    #[test]
    fn unregister_during_dispatch_is_deferred() {
        let mut t = T::new();
        let a = t.register(3, "a").id;
        let b = t.register(3, "b").id;
        let cbs = t.begin_dispatch(3).unwrap();
        assert_eq!(cbs, [(a, "a"), (b, "b")]);
        // "a" runs and removes itself and "b".
        assert_eq!(t.unregister(3, a), Ok(Unregistered::Deferred));
        assert_eq!(t.unregister(3, b), Ok(Unregistered::Deferred));
        assert!(!t.is_live(3, b), "b must not be called in this round");
        assert_eq!(t.unregister(3, a), Err(IntrError::NoSuchCallback));
        // A callback may also add one; it is not part of this round.
        let c = t.register(3, "c").id;
        let end = t.end_dispatch(3);
        assert_eq!(end.removed, ["a", "b"]);
        assert!(!end.source_empty);
        assert!(t.is_live(3, c));
        assert_eq!(t.begin_dispatch(3).unwrap(), [(c, "c")]);
        assert_eq!(t.unregister(3, c), Ok(Unregistered::Deferred));
        let end = t.end_dispatch(3);
        assert!(end.source_empty);
        assert!(t.is_empty());
    }

    #[test]
    fn removed_source_during_dispatch() {
        let mut t = T::new();
        let a = t.register(1, "a").id;
        t.register(1, "b");
        t.begin_dispatch(1).unwrap();
        assert_eq!(t.remove_source(1).unwrap(), ["a", "b"]);
        assert!(!t.is_live(1, a));
        assert!(t.end_dispatch(1).source_empty);
        assert!(t.begin_dispatch(1).is_none(), "stale event ignored");
        assert_eq!(t.remove_source(1), Err(IntrError::NoSuchSource));
    }

    #[test]
    fn marked_busy_before_a_read_defers_and_hands_out_what_is_live_after() {
        let mut t = T::new();
        let a = t.register(4, "a").id;
        assert!(t.mark_busy(4));
        assert!(!t.mark_busy(5), "unknown source");
        // While the source is read: its owner swaps callbacks.
        assert_eq!(t.unregister(4, a), Ok(Unregistered::Deferred));
        let b = t.register(4, "b").id;
        assert_eq!(t.begin_dispatch(4).unwrap(), [(b, "b")]);
        let end = t.end_dispatch(4);
        assert_eq!(end.removed, ["a"]);
        assert!(!end.source_empty);
    }

    #[test]
    fn ids_are_never_reused() {
        let mut t = T::new();
        let a = t.register(1, "a").id;
        t.unregister(1, a).unwrap();
        let b = t.register(1, "b").id;
        assert!(b.get() > a.get());
    }
}
