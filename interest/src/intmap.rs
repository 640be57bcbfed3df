//! A hash map for small integer keys (tokens, descriptor numbers), shared
//! by the driver and the backends.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A multiply-xor hasher for small integer keys (tokens, descriptor numbers).
/// SipHash would cost more than the rest of `declare_interest` together.
#[derive(Default, Clone, Copy, Debug)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_i32(&mut self, n: i32) {
        self.write_u64(u64::from(n as u32));
    }
}

/// A `HashMap` with [`IntHasher`].
pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// A key of a [`DenseMap`]: a small integer in the common case (a slab
/// index used as a token, a descriptor number).
pub trait DenseKey: Copy + Eq + std::hash::Hash {
    /// The key as an index; `None` for keys that never go in the array
    /// (negative descriptor numbers).
    fn index(self) -> Option<usize>;
}

impl DenseKey for crate::Token {
    #[inline]
    fn index(self) -> Option<usize> {
        Some(self.0)
    }
}

impl DenseKey for std::os::fd::RawFd {
    #[inline]
    fn index(self) -> Option<usize> {
        usize::try_from(self).ok()
    }
}

/// Fewest array entries a [`DenseMap`] may grow to, whatever its length.
const MIN_DENSE: usize = 1024;

/// A map from small integer keys: keys below the array's length are looked
/// up by indexing (no hashing), the others in an [`IntMap`].
///
/// Programs name registrations by slab indices (mio's idiom) and descriptor
/// numbers are dense by the kernel's lowest-free-number rule, so nearly every
/// key is small; the hash map only holds the outliers (tokens carrying tags
/// in high bits, ever-increasing counters).
///
/// Memory is bounded by the peak length, never by the keys seen: the array
/// grows to cover a key only while its length stays within
/// `max(1024, 2 × (len + 1))` entries. The hash map, once used, keeps room
/// for twice the whole map's peak length: every live key may end up hashed
/// (ever-increasing tokens leave the array's range one by one), and
/// churn (remove one key, insert another) at a steady length then rehashes
/// in place instead of doubling the table months into a run (hashbrown
/// doubles a table whose tombstones fill it while more than half of it is
/// live).
#[derive(Clone, Debug)]
pub struct DenseMap<K, V> {
    dense: Vec<Option<V>>,
    sparse: IntMap<K, V>,
    /// The sparse map's length above which it reserves room again.
    sparse_limit: usize,
    len: usize,
}

impl<K, V> Default for DenseMap<K, V> {
    fn default() -> Self {
        DenseMap {
            dense: Vec::new(),
            sparse: IntMap::default(),
            sparse_limit: 0,
            len: 0,
        }
    }
}

impl<K: DenseKey, V> DenseMap<K, V> {
    /// The number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        if let Some(i) = key.index()
            && let Some(v) = self.dense.get(i)
        {
            return v.as_ref();
        }
        if self.sparse.is_empty() {
            return None;
        }
        self.sparse.get(key)
    }

    /// The value of `key`, mutably.
    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if let Some(i) = key.index()
            && i < self.dense.len()
        {
            return self.dense[i].as_mut();
        }
        if self.sparse.is_empty() {
            return None;
        }
        self.sparse.get_mut(key)
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Sets the value of `key`, returning the old one.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(i) = key.index() {
            if i >= self.dense.len() && i < MIN_DENSE.max(2 * (self.len + 1)) {
                self.grow_dense(i);
            }
            if let Some(entry) = self.dense.get_mut(i) {
                let old = entry.replace(value);
                if old.is_none() {
                    self.len += 1;
                }
                return old;
            }
        }
        let old = self.sparse.insert(key, value);
        if old.is_none() {
            self.len += 1;
            if self.sparse.len() > self.sparse_limit {
                // Room for twice the whole map: see the type's notes.
                self.sparse.reserve(2 * self.len - self.sparse.len());
                self.sparse_limit = (self.sparse.capacity() / 2).saturating_sub(1);
            }
        }
        old
    }

    /// Removes `key`, returning its value.
    #[inline]
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let old = match key.index() {
            Some(i) if i < self.dense.len() => self.dense[i].take(),
            _ if self.sparse.is_empty() => None,
            _ => self.sparse.remove(key),
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.dense
            .iter()
            .filter_map(Option::as_ref)
            .chain(self.sparse.values())
    }

    /// Grows the array to cover index `i`, moving the hashed keys it now
    /// covers into it (no key below the array's length is ever hashed).
    fn grow_dense(&mut self, i: usize) {
        let cap = MIN_DENSE.max(2 * (self.len + 1));
        let new_len = (i + 1)
            .max(self.dense.len() * 2)
            .max(16)
            .next_power_of_two()
            .min(cap)
            .max(i + 1);
        self.dense.resize_with(new_len, || None);
        if self.sparse.is_empty() {
            return;
        }
        let moved: Vec<K> = self
            .sparse
            .keys()
            .filter(|k| k.index().is_some_and(|j| j < new_len))
            .copied()
            .collect();
        for k in moved {
            let v = self.sparse.remove(&k).expect("a key just listed");
            let j = k.index().expect("a dense key");
            self.dense[j] = Some(v);
        }
    }
}

impl<K: DenseKey, V> std::ops::Index<&K> for DenseMap<K, V> {
    type Output = V;
    fn index(&self, key: &K) -> &V {
        self.get(key).expect("no entry for the key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Token;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(usize, u32),
        Remove(usize),
    }

    fn key() -> impl Strategy<Value = usize> {
        prop_oneof![0usize..64, 0usize..5000, any::<usize>(), (1usize << 63)..]
    }

    proptest! {
        /// The map answers as a `HashMap` does, whatever mix of small and
        /// large keys.
        #[test]
        fn agrees_with_hashmap(ops in proptest::collection::vec(
            prop_oneof![
                (key(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
                key().prop_map(Op::Remove),
            ],
            0..400,
        )) {
            let mut map = DenseMap::<Token, u32>::default();
            let mut oracle = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        prop_assert_eq!(map.insert(Token(k), v), oracle.insert(k, v));
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(map.remove(&Token(k)), oracle.remove(&k));
                    }
                }
                prop_assert_eq!(map.len(), oracle.len());
            }
            for (k, v) in &oracle {
                prop_assert_eq!(map.get(&Token(*k)), Some(v));
                let mut v = *v;
                prop_assert_eq!(map.get_mut(&Token(*k)), Some(&mut v));
            }
            let mut got: Vec<u32> = map.values().copied().collect();
            let mut want: Vec<u32> = oracle.values().copied().collect();
            got.sort_unstable();
            want.sort_unstable();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn negative_descriptors_are_hashed() {
        let mut map = DenseMap::<std::os::fd::RawFd, u32>::default();
        assert_eq!(map.insert(-1, 7), None);
        assert_eq!(map.insert(3, 8), None);
        assert_eq!(map.get(&-1), Some(&7));
        assert_eq!(map.remove(&-1), Some(7));
        assert_eq!(map.get(&-1), None);
        assert_eq!(map[&3], 8);
    }

    /// The array is bounded by the peak length, not by the keys: a counter
    /// used as token (new key for each insert, old one removed) ends up
    /// hashed once it leaves the bound.
    #[test]
    fn array_is_bounded_by_the_length() {
        let mut map = DenseMap::<Token, u32>::default();
        for k in 0..100_000usize {
            map.insert(Token(k), 1);
            if k >= 10 {
                map.remove(&Token(k - 10));
            }
        }
        assert_eq!(map.len(), 10);
        assert!(
            map.dense.len() <= MIN_DENSE,
            "array grew to {}",
            map.dense.len()
        );
        assert_eq!(map.sparse.len(), 10);
    }

    /// Churn at a steady length never grows the hash map past the room it
    /// reserved when the length peaked (hashbrown alone doubles such a
    /// table once its tombstones fill it).
    #[test]
    fn steady_churn_does_not_grow_the_hash_table() {
        let mut map = DenseMap::<Token, u32>::default();
        let base = 1usize << 40;
        let live = 9000;
        for k in 0..live {
            map.insert(Token(base + k), 0);
        }
        // No tombstones yet: this is the table's full capacity.
        let cap = map.sparse.capacity();
        assert!(cap >= 2 * live, "reserved {cap} for {live}");
        for k in live..live * 30 {
            map.remove(&Token(base + k - live));
            map.insert(Token(base + k), 0);
            assert!(
                map.sparse.capacity() <= cap,
                "the table grew from {cap} to {} at a steady length",
                map.sparse.capacity()
            );
        }
    }
}
