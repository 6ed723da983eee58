//! The host index: which internal routes can possibly match a request, without looking at the
//! others. Exact hosts hash by name; `*.suffix` hosts hash by suffix and are found by walking the
//! request host's suffixes label by label; `prefix.*` hosts hash by prefix, walked the same way
//! from the left; routes without hosts sit in one bucket.
//!
//! Every candidate list handed out is sorted by rank (the router's entry order), so a scan can stop
//! at the first match that nothing after it can beat. A bucket with many routes (one host with
//! hundreds of paths is common behind an Ingress controller) also gets a path filter: its
//! plain-prefix routes are hashed by prefix, and a lookup hashes the request path cut at each
//! prefix length the bucket uses, so only routes whose prefix matches are looked at (Kong's router
//! has a similar path prefilter).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::host::{dots, NamePattern};

/// One route host in a bucket: the internal route (its rank) and the port the host demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Candidate {
    /// Index into the router's rank-ordered entries.
    pub entry: u32,
    /// Dense rank of the entry's priority (0 = highest): entries of equal priority share a tier,
    /// so a scan can prune without touching the entries.
    pub tier: u32,
    /// `Some(p)`: the route host was `name:p`, the request must carry port `p`.
    pub port: Option<u16>,
}

/// Buckets with more candidates than this get a path filter.
const FILTER_THRESHOLD: usize = 16;

/// Candidates of one host pattern (or of the host-less routes), compact: the common bucket (one
/// host, one or two path groups) keeps its candidates inside the hash slot.
#[derive(Debug)]
enum Bucket {
    /// Up to `INLINE` candidates, the first `len` valid.
    Inline { len: u8, items: [Candidate; INLINE] },
    /// A short list, by rank.
    Heap(Box<[Candidate]>),
    /// A large bucket with its path filter.
    Filtered(Box<PathFilter>),
}

/// Candidates stored inline in a bucket.
const INLINE: usize = 2;

/// Plain-prefix candidates of a large bucket hashed by prefix; the others kept apart.
#[derive(Debug)]
struct PathFilter {
    /// The distinct prefix lengths in `by_prefix`, longest first.
    lengths: Box<[usize]>,
    by_prefix: Map<Vec<Candidate>>,
    /// Candidates without a plain prefix (no paths, or regex paths), by rank.
    others: Vec<Candidate>,
}

type Map<V> = HashMap<Box<[u8]>, V, BuildHasherDefault<WordHasher>>;

/// A multiply-rotate hash over 8-byte words (the FxHash recipe) with a final mix. Keys are route
/// hosts and prefixes from the config, so lookups need speed, not resistance to chosen keys: a
/// request cannot add keys, only probe the fixed table.
#[derive(Default)]
struct WordHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl WordHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // Fold the high bits down: hashbrown takes bucket bits from the bottom, tags from the top.
        let h = self.0 ^ (self.0 >> 32);
        h.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (h >> 29)
    }
}

#[derive(Debug)]
pub(crate) struct HostIndex {
    exact: Map<Bucket>,
    leading: Map<Bucket>,
    trailing: Map<Bucket>,
    hostless: Bucket,
}

/// Collects candidates per host pattern; [`HostIndexBuilder::build`] sorts and compacts them.
#[derive(Debug, Default)]
pub(crate) struct HostIndexBuilder {
    exact: Map<Vec<Candidate>>,
    leading: Map<Vec<Candidate>>,
    trailing: Map<Vec<Candidate>>,
    hostless: Vec<Candidate>,
}

impl HostIndexBuilder {
    /// Files `candidate` under a route host pattern.
    pub(crate) fn insert(&mut self, pattern: &NamePattern, candidate: Candidate) {
        let (map, key) = match pattern {
            NamePattern::Exact(name) => (&mut self.exact, name),
            NamePattern::Leading(suffix) => (&mut self.leading, suffix),
            NamePattern::Trailing(prefix) => (&mut self.trailing, prefix),
        };
        map.entry(key.as_bytes().into()).or_default().push(candidate);
    }

    /// Files `candidate` as matching any host.
    pub(crate) fn insert_hostless(&mut self, candidate: Candidate) {
        self.hostless.push(candidate);
    }

    /// Sorts every bucket by rank, drops duplicates (a route listing a host twice) and builds the
    /// path filters. `prefixes` gives an entry's plain path prefixes, `None` for other entries.
    pub(crate) fn build<'a, P>(self, prefixes: impl Fn(u32) -> Option<P>) -> HostIndex
    where
        P: Iterator<Item = &'a [u8]>,
    {
        let compact = |map: Map<Vec<Candidate>>| -> Map<Bucket> {
            map.into_iter().map(|(key, list)| (key, Bucket::new(list, &prefixes))).collect()
        };
        HostIndex {
            exact: compact(self.exact),
            leading: compact(self.leading),
            trailing: compact(self.trailing),
            hostless: Bucket::new(self.hostless, &prefixes),
        }
    }
}

impl HostIndex {
    /// Calls `visit` with rank-ordered candidate lists that, together, hold every route that can
    /// match `name` (lower-case, no port) and `path`. An empty name matches only host-less routes.
    pub(crate) fn visit(&self, name: &[u8], path: &str, mut visit: impl FnMut(&[Candidate])) {
        let path = path.as_bytes();
        if !name.is_empty() {
            if let Some(bucket) = self.exact.get(name) {
                bucket.visit(path, &mut visit);
            }
            if !self.leading.is_empty() {
                for dot in dots(name) {
                    if let Some(bucket) = self.leading.get(&name[dot + 1..]) {
                        bucket.visit(path, &mut visit);
                    }
                }
            }
            if !self.trailing.is_empty() {
                for dot in dots(name) {
                    if let Some(bucket) = self.trailing.get(&name[..dot]) {
                        bucket.visit(path, &mut visit);
                    }
                }
            }
        }
        self.hostless.visit(path, &mut visit);
    }
}

#[cfg(test)]
impl HostIndex {
    /// How many buckets have a path filter.
    pub(crate) fn filtered_buckets(&self) -> usize {
        let buckets = self.exact.values().chain(self.leading.values()).chain(self.trailing.values());
        buckets.chain(std::iter::once(&self.hostless)).filter(|b| matches!(b, Bucket::Filtered(_))).count()
    }
}

impl Bucket {
    fn new<'a, P>(mut list: Vec<Candidate>, prefixes: &impl Fn(u32) -> Option<P>) -> Bucket
    where
        P: Iterator<Item = &'a [u8]>,
    {
        list.sort_unstable();
        list.dedup();
        if list.len() > FILTER_THRESHOLD {
            return Bucket::Filtered(Box::new(PathFilter::build(list, prefixes)));
        }
        let mut items = [Candidate { entry: 0, tier: 0, port: None }; INLINE];
        match u8::try_from(list.len()) {
            Ok(len) if list.len() <= INLINE => {
                items[..list.len()].copy_from_slice(&list);
                Bucket::Inline { len, items }
            }
            _ => Bucket::Heap(list.into()),
        }
    }

    fn visit(&self, path: &[u8], visit: &mut impl FnMut(&[Candidate])) {
        match self {
            Bucket::Inline { len: 0, .. } => {}
            Bucket::Inline { len, items } => visit(&items[..usize::from(*len)]),
            Bucket::Heap(list) => visit(list),
            Bucket::Filtered(filter) => {
                for &len in filter.lengths.iter().filter(|l| **l <= path.len()) {
                    if let Some(list) = filter.by_prefix.get(&path[..len]) {
                        visit(list);
                    }
                }
                if !filter.others.is_empty() {
                    visit(&filter.others);
                }
            }
        }
    }
}

impl PathFilter {
    fn build<'a, P>(sorted: Vec<Candidate>, prefixes: &impl Fn(u32) -> Option<P>) -> PathFilter
    where
        P: Iterator<Item = &'a [u8]>,
    {
        let mut by_prefix: Map<Vec<Candidate>> = Map::default();
        let mut others = Vec::new();
        for candidate in sorted {
            match prefixes(candidate.entry) {
                Some(list) => {
                    for prefix in list {
                        // Candidates arrive by rank, so every list stays sorted.
                        let slot = by_prefix.entry(prefix.into()).or_default();
                        if slot.last() != Some(&candidate) {
                            slot.push(candidate);
                        }
                    }
                }
                None => others.push(candidate),
            }
        }
        let mut lengths: Vec<usize> = by_prefix.keys().map(|k| k.len()).collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        lengths.dedup();
        others.shrink_to_fit();
        PathFilter { lengths: lengths.into(), by_prefix, others }
    }
}
