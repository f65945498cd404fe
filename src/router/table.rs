//! A flat hash table keyed by paths, for the exact paths and the template
//! buckets of a method.
//!
//! Among 100k routes the table does not fit in the CPU's caches, so a
//! lookup costs about one memory access per cache line it touches. Each
//! entry is one cache line that holds the value and, for the keys of common
//! length, the key and its tail inline: a hit reads the control group
//! (128 KiB for 100k routes, which stay cached) and one line. Longer keys
//! go to one shared string, one more line.

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// foldhash with a fixed seed: the keys are configured, so there is no
/// flooding to guard against, and a path hashes in a few nanoseconds.
type PathHasher = foldhash::fast::FixedState;

/// Key and tail bytes kept in an entry itself: with a 24-byte value, an
/// entry of one cache line. (Entries of two lines, with room for most
/// template shapes, measured no faster among 100k templates.)
const INLINE: usize = 36;

enum Text {
    Inline {
        key_len: u8,
        len: u8,
        bytes: [u8; INLINE],
    },
    /// `text[start..start + len]`, the key first.
    Shared {
        start: usize,
        key_len: u32,
        len: u32,
    },
}

/// One cache line when the value is 24 bytes (a route's endpoints).
#[repr(align(64))]
struct Entry<V> {
    value: V,
    text: Text,
}

impl<V> Entry<V> {
    /// Key and tail.
    #[inline]
    fn parts<'e>(&'e self, shared: &'e str) -> (&'e [u8], &'e [u8]) {
        let (all, key_len) = match &self.text {
            Text::Inline {
                key_len,
                len,
                bytes,
            } => (&bytes[..usize::from(*len)], usize::from(*key_len)),
            Text::Shared {
                start,
                key_len,
                len,
            } => (
                shared
                    .as_bytes()
                    .get(*start..*start + *len as usize)
                    .unwrap_or_default(),
                *key_len as usize,
            ),
        };
        all.split_at(key_len.min(all.len()))
    }
}

pub(super) struct PathTable<V> {
    table: HashTable<Entry<V>>,
    shared: String,
    hasher: PathHasher,
}

impl<V> Default for PathTable<V> {
    fn default() -> PathTable<V> {
        PathTable {
            table: HashTable::new(),
            shared: String::new(),
            hasher: PathHasher::with_seed(0x5851_F42D_4C95_7F2D),
        }
    }
}

impl<V> PathTable<V> {
    /// A table of distinct keys, each with a tail: bytes kept beside the
    /// key, so that reading them costs no other cache line. Keys and tails
    /// are parts of paths, which the schema keeps to `MAX_PATH_LEN` bytes.
    pub(super) fn build<K: AsRef<str>>(
        routes: impl ExactSizeIterator<Item = (K, K, V)>,
    ) -> PathTable<V> {
        let mut t = PathTable::default();
        t.table.reserve(routes.len(), |_| 0);
        for (key, tail, value) in routes {
            let (key, tail) = (key.as_ref(), tail.as_ref());
            let total = key.len() + tail.len();
            let text = match (u8::try_from(key.len()), u8::try_from(total)) {
                (Ok(key_len), Ok(len)) if total <= INLINE => {
                    let mut bytes = [0; INLINE];
                    bytes[..key.len()].copy_from_slice(key.as_bytes());
                    bytes[key.len()..total].copy_from_slice(tail.as_bytes());
                    Text::Inline {
                        key_len,
                        len,
                        bytes,
                    }
                }
                _ => {
                    let (Ok(key_len), Ok(len)) = (u32::try_from(key.len()), u32::try_from(total))
                    else {
                        continue;
                    };
                    let start = t.shared.len();
                    t.shared.push_str(key);
                    t.shared.push_str(tail);
                    Text::Shared {
                        start,
                        key_len,
                        len,
                    }
                }
            };
            let (shared, hasher) = (&t.shared, &t.hasher);
            t.table.insert_unique(
                hasher.hash_one(key.as_bytes()),
                Entry { value, text },
                |e| hasher.hash_one(e.parts(shared).0),
            );
        }
        t.shared.shrink_to_fit();
        t
    }

    /// The value under `key`, with its tail.
    #[inline]
    pub(super) fn get(&self, key: &str) -> Option<(&V, &[u8])> {
        if self.table.is_empty() {
            return None;
        }
        let key = key.as_bytes();
        let hash = self.hasher.hash_one(key);
        let (found, (_, tail)) = self
            .table
            .find(hash, |e| e.parts(&self.shared).0 == key)
            .map(|e| (e, e.parts(&self.shared)))?;
        Some((&found.value, tail))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &V> {
        self.table.iter().map(|e| &e.value)
    }
}

/// The size of a table entry holding a `V`.
#[cfg(test)]
pub(super) fn entry_size<V>() -> usize {
    std::mem::size_of::<Entry<V>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_key_and_nothing_else() {
        // Short and long keys and tails, inline and shared.
        let keys: Vec<String> = (0..10_000)
            .map(|i| match i % 3 {
                0 => format!("/api/svc{i}/users"),
                1 => format!("/a/{i}"),
                _ => format!("/internal/partner/service-{i}/accounts/ledger"),
            })
            .collect();
        let tail = |i: usize| match i % 4 {
            0 => "",
            1 => "x",
            2 => "users/{p0}",
            _ => "users/{p0}/orders/{p1}/lines/{p2}",
        };
        let t: PathTable<usize> = PathTable::build(
            keys.iter()
                .enumerate()
                .map(|(i, k)| (k.as_str(), tail(i), i)),
        );
        assert_eq!(t.table.len(), keys.len());
        assert!(!t.shared.is_empty());
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(t.get(k), Some((&i, tail(i).as_bytes())), "{k}");
        }
        assert_eq!(t.get("/api/svc10000/users"), None);
        assert_eq!(t.get("/api/svc1/users/"), None);
        assert_eq!(t.get("/api/svc0/user"), None);
        assert_eq!(t.get("/a/1x"), None);
        assert_eq!(t.get(""), None);
        let empty: PathTable<u8> = PathTable::build(std::iter::empty::<(&str, &str, u8)>());
        assert_eq!(empty.get("/"), None);
    }
}
