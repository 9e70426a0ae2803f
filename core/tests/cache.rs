//! The cache against its oracle, and its eviction, accounting and expiry
//! rules one by one.

use std::time::Duration;

use bytes::Bytes;
use groupcache_core::cache::Cache;
use groupcache_core::testing::epoch;
use groupcache_core::testing::model::{CacheCheck, CacheOp};
use proptest::prelude::*;

/// Every cache here hashes with this seed: which keys share a ghost
/// bucket, and so what the tests see, is the same in every run.
const SEED: u64 = 1;

fn op() -> impl Strategy<Value = CacheOp> {
    prop_oneof![
        4 => any::<u8>().prop_map(|k| CacheOp::Get(k % 16)),
        4 => (any::<u8>(), 0usize..40, prop::option::of(1u8..20))
            .prop_map(|(k, len, ttl)| CacheOp::Insert { key: k % 16, len, ttl }),
        1 => any::<u8>().prop_map(|k| CacheOp::Remove(k % 16)),
        2 => (0u8..10).prop_map(CacheOp::Advance),
        1 => (0usize..400).prop_map(CacheOp::Budget),
        1 => (0u8..5).prop_map(CacheOp::Sweep),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]
    #[test]
    fn keeps_its_promises(
        ops in prop::collection::vec(op(), 1..300),
        max in 50usize..400,
        overhead in prop_oneof![Just(0usize), 1usize..24],
        segment in prop_oneof![Just(0usize), 8usize..160],
    ) {
        let mut check = CacheCheck::with_segment_size(max, overhead, segment, epoch());
        for op in &ops {
            if let Err(e) = check.step(op) {
                return Err(TestCaseError::fail(format!("{op:?}: {e}")));
            }
        }
    }
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// Ten 18-byte items (16 of header, 1 of key, 1 of value) per segment.
fn segmented(max: usize) -> Cache {
    Cache::with_segment_size(max, 0, 180).with_hash_seed(SEED)
}

/// Ten two-byte keys, `prefix0` to `prefix9`.
fn ten(prefix: &str) -> Vec<String> {
    (0..10).map(|i| format!("{prefix}{i}")).collect()
}

/// Room for thirty of [`ten`]'s keys, ten 19-byte items per segment,
/// filled with "a0".."a9", "b0".."b9" and "c0".."c9", all in the small
/// queue, oldest first.
fn thirty(now: std::time::Instant) -> Cache {
    let mut c = Cache::with_segment_size(90, 0, 190).with_hash_seed(SEED);
    for k in ten("a").iter().chain(&ten("b")).chain(&ten("c")) {
        c.insert(k, &b("v"), None, now);
    }
    assert_eq!((c.len(), c.small_bytes()), (30, 90));
    c
}

#[test]
fn keys_read_in_the_small_queue_move_to_main_and_outlive_a_scan() {
    let now = epoch();
    // Room for 30 two-byte entries: three segments, all in the small queue
    // until the budget is first exceeded.
    let mut c = segmented(60);
    let keys: Vec<String> = (0..30).map(|i| char::from(b'A' + i).to_string()).collect();
    for k in &keys {
        c.insert(k, &b("v"), None, now);
    }
    assert_eq!(
        (c.segments(), c.len(), c.small_bytes()),
        (3, 30, 60),
        "{:?}",
        c.keys()
    );
    // Read every other key of the oldest segment.
    for k in keys[..10].iter().step_by(2) {
        assert!(c.get(k, now).is_some());
    }
    // A new key pushes the oldest segment out of the small queue: the keys
    // read there move to main, the others are evicted.
    c.insert("new", &b("v"), None, now);
    let held: Vec<bool> = keys[..10].iter().map(|k| c.contains(k, now)).collect();
    assert_eq!(
        held,
        [true, false, true, false, true, false, true, false, true, false]
    );
    assert_eq!((c.stats().evictions, c.ghosts()), (5, 5));
    // A scan of a thousand new keys, none read twice, passes through the
    // small queue and leaves main alone, unread as its keys are.
    for i in 0..1000 {
        c.insert(&format!("scan{i}"), &b("v"), None, now);
        c.validate().unwrap();
    }
    assert!(keys[..10].iter().step_by(2).all(|k| c.contains(k, now)));
    assert!(keys[10..].iter().all(|k| !c.contains(k, now)));
}

#[test]
fn a_key_evicted_unread_and_inserted_again_soon_goes_to_main() {
    let now = epoch();
    let mut c = thirty(now);
    let first = ten("a");
    // Pushes "a0".."a9" out unread: they leave ghosts.
    c.insert("new", &b("v"), None, now);
    assert!(first.iter().all(|k| !c.contains(k, now)));
    assert_eq!(c.ghosts(), 10);
    // Back soon: each goes to main, and its ghost is spent.
    let small = c.small_bytes();
    c.insert("a0", &b("v"), None, now);
    assert_eq!(c.ghosts(), 9);
    assert_eq!(c.small_bytes(), small, "a0 went to main");
    assert_eq!(c.keys().last(), Some(&"a0"), "main comes last in keys()");
    // A key that never left a ghost goes to the small queue.
    c.insert("z", &b("v"), None, now);
    assert_eq!(c.keys().last(), Some(&"a0"));
    c.validate().unwrap();
}

#[test]
fn main_gives_a_read_key_a_second_round_and_evicts_unread_ones() {
    let now = epoch();
    let mut c = thirty(now);
    let a = ten("a");
    for k in &a {
        c.get(k, now);
    }
    // "a*" move to main. Fill main past the budget with more promoted keys.
    for i in 0..40 {
        let k = format!("d{i:02}");
        c.insert(&k, &b("v"), None, now);
        c.get(&k, now);
        c.validate().unwrap();
    }
    // Main had to make room: "a0".."a9", unread since they moved, went
    // first; read ones went round again.
    assert!(a.iter().all(|k| !c.contains(k, now)));
    assert!(c.contains("d39", now));
    c.validate().unwrap();
}

#[test]
fn removed_and_replaced_items_stay_charged_until_their_segment_goes() {
    let now = epoch();
    let mut c = segmented(1000);
    for k in ["a", "b", "c"] {
        c.insert(k, &b("1234"), None, now);
    }
    assert_eq!(c.bytes(), 15);
    // A replacement is written anew; the old item is dead but still there.
    c.insert("a", &b("12"), None, now);
    assert_eq!((c.bytes(), c.len()), (15 + 3, 3));
    assert_eq!(c.remove("b"), Some(b("1234")));
    assert_eq!((c.bytes(), c.len()), (18, 2));
    // Once every item of a segment is dead, it is freed at once.
    c.remove("a");
    c.remove("c");
    assert_eq!(
        (c.bytes(), c.len(), c.segments()),
        (0, 0, 1),
        "the open segment is reused"
    );
    c.validate().unwrap();
}

#[test]
fn hits_on_a_closed_segment_share_its_buffer() {
    let now = epoch();
    let mut c = segmented(1000);
    for i in 0..12 {
        c.insert(&format!("k{i:02}"), &Bytes::from(vec![i; 4]), None, now);
    }
    assert_eq!(
        c.segments(),
        2,
        "the first segment closed after seven items"
    );
    let first = c.get("k00", now).unwrap().value;
    let second = c.get("k01", now).unwrap().value;
    assert_eq!((&first[..], &second[..]), (&[0; 4][..], &[1; 4][..]));
    // Both are slices of one buffer, an item (16 + 3 + 4 bytes) apart.
    assert_eq!(second.as_ptr() as usize - first.as_ptr() as usize, 23);
    // An item of the open segment is copied out once and shared after.
    let a = c.get("k10", now).unwrap().value;
    let again = c.get("k10", now).unwrap().value;
    assert_eq!(a.as_ptr(), again.as_ptr());
}

#[test]
fn entry_larger_than_budget_is_refused_and_drops_the_old_value() {
    let now = epoch();
    let mut c = Cache::new(8).with_hash_seed(SEED);
    assert!(c.insert("k", &b("v"), None, now));
    assert!(!c.insert("k", &b("too large a value"), None, now));
    assert!(c.get("k", now).is_none());
    assert_eq!(c.bytes(), 0);
}

#[test]
fn an_insert_keeps_its_entry_even_when_its_segment_must_go() {
    // A segment as large as the budget: making room for the new entry
    // evicts the segment it was written to, and the entry moves instead.
    let now = epoch();
    let mut c = Cache::with_segment_size(20, 0, 1000).with_hash_seed(SEED);
    for k in ["a", "b", "c", "d", "e", "f"] {
        assert!(c.insert(k, &b("123456789"), None, now));
        assert!(c.contains(k, now), "{k} held right after its insert");
        c.validate().unwrap();
    }
    assert_eq!(c.len(), 2);
}

#[test]
fn re_added_key_keeps_its_new_deadline() {
    // The original's per-insert timer deleted a re-added key early.
    let now = epoch();
    let mut c = Cache::new(100).with_hash_seed(SEED);
    let s = Duration::from_secs(1);
    c.insert("k", &b("1"), Some(now + s), now);
    c.remove("k");
    c.insert("k", &b("2"), Some(now + 3 * s), now + s / 2);
    c.sweep(now + 2 * s, usize::MAX);
    assert_eq!(c.get("k", now + 2 * s).unwrap().value, b("2"));
    assert!(c.get("k", now + 3 * s).is_none());
}

#[test]
fn expired_entries_are_swept_on_insert() {
    let now = epoch();
    let mut c = Cache::new(1000).with_hash_seed(SEED);
    for i in 0..8 {
        c.insert(
            &format!("k{i}"),
            &b("v"),
            Some(now + Duration::from_millis(1)),
            now,
        );
    }
    let later = now + Duration::from_millis(5);
    c.insert("x", &b("v"), None, later);
    c.insert("y", &b("v"), None, later);
    assert_eq!(c.len(), 2, "two inserts sweep up to eight expired entries");
    assert_eq!(c.stats().expirations, 8);
    c.validate().unwrap();
}

#[test]
fn a_segment_is_swept_when_its_last_entry_expires() {
    let now = epoch();
    let ms = Duration::from_millis;
    let mut c = segmented(1000);
    for i in 0..10u64 {
        c.insert(&i.to_string(), &b("v"), Some(now + ms(10 + i)), now);
    }
    c.insert("later", &b("v"), Some(now + ms(100)), now);
    assert_eq!(c.segments(), 2);
    assert_eq!(
        c.next_expiry(),
        Some(now + ms(19)),
        "the first segment's latest"
    );
    // Entries expire one by one: none is served, the segment stays.
    assert!(c.get("0", now + ms(15)).is_none());
    assert_eq!(c.sweep(now + ms(18), usize::MAX), 0);
    assert_eq!(c.sweep(now + ms(19), usize::MAX), 9);
    assert_eq!((c.len(), c.segments(), c.bytes()), (1, 1, 6));
    assert_eq!(c.stats().expirations, 10);
    c.validate().unwrap();
}

#[test]
fn stats_count_gets_hits_and_evictions() {
    let now = epoch();
    let mut c = Cache::new(4).with_hash_seed(SEED);
    c.insert("a", &b("1"), None, now);
    c.get("a", now);
    c.get("z", now);
    c.insert("b", &b("1"), None, now);
    c.insert("c", &b("1"), None, now); // b goes: a was read, it gets a second round
    let s = c.stats();
    assert_eq!(
        (s.gets, s.hits, s.evictions, s.items, s.bytes),
        (2, 1, 1, 2, 4)
    );
    assert_eq!(c.keys(), ["c", "a"]);
}

#[test]
fn under_updates_alone_a_cache_keeps_nine_tenths_of_its_live_capacity() {
    // Dead items are compacted away rather than pushing live ones out: a
    // cache with room for 1,000 entries, updated at random among 1,000
    // keys, keeps at least 900 of them.
    let now = epoch();
    let value = [7u8; 32];
    let keys: Vec<String> = (0..1000).map(|i| format!("key-{i:08}")).collect();
    for overhead in [0, groupcache_core::cache::ENTRY_OVERHEAD] {
        let mut c =
            Cache::with_entry_overhead(1000 * (12 + 32 + overhead), overhead).with_hash_seed(SEED);
        for k in &keys {
            assert!(c.insert(k, &value, None, now));
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut least = usize::MAX;
        for i in 0..100_000 {
            // xorshift: a fixed sequence of keys.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.insert(&keys[(x % 1000) as usize], &value, None, now);
            if i >= 10_000 {
                least = least.min(c.len());
            }
        }
        c.validate().unwrap();
        assert!(
            least >= 900,
            "overhead {overhead}: held as few as {least} of 1000 live keys, now {}",
            c.len()
        );
    }
}

#[test]
fn an_update_of_the_same_length_is_written_in_place_unless_a_hit_shares_the_buffer() {
    let now = epoch();
    let mut c = segmented(1000);
    for i in 0..12 {
        c.insert(&format!("k{i:02}"), &b("1234"), None, now);
    }
    let (bytes, segments) = (c.bytes(), c.segments());
    assert_eq!(
        segments, 2,
        "k00 is in a closed segment, k11 in the open one"
    );
    // In place, closed and open segment alike: nothing dead is left.
    c.insert("k00", &b("abcd"), None, now);
    c.insert("k11", &b("efgh"), None, now);
    assert_eq!((c.bytes(), c.segments()), (bytes, segments));
    assert_eq!(c.get("k00", now).unwrap().value, b("abcd"));
    // A value handed out of a closed segment must not change under its
    // reader: while it lives, an update is written anew.
    let held = c.get("k01", now).unwrap().value;
    c.insert("k00", &b("wxyz"), None, now);
    assert_eq!(c.bytes(), bytes + 7, "a new item, the old one dead");
    assert_eq!(held, b("1234"));
    drop(held);
    // Another length cannot go in place but at the open segment's end.
    c.insert("k01", &b("12345"), None, now);
    assert_eq!(c.bytes(), bytes + 7 + 8);
    assert_eq!(c.get("k01", now).unwrap().value, b("12345"));
    c.validate().unwrap();
}

#[test]
fn a_main_segment_half_dead_is_compacted_not_evicted() {
    let now = epoch();
    let mut c = thirty(now);
    let a = ten("a");
    // "a*" leave unread and come back as ghosts: main, never read.
    c.insert("d0", &b("v"), None, now);
    for k in &a {
        c.insert(k, &b("v"), None, now);
    }
    assert!(a.iter().all(|k| c.contains(k, now)));
    // Half of them updated to another length: written anew, their old
    // items dead in the segment the other half still lives in.
    for k in &a[..5] {
        c.insert(k, &b("vv"), None, now);
    }
    let evictions = c.stats().evictions;
    let small_keys = c.len() - a.len();
    // Room for main alone: the small queue goes, then main's oldest
    // segment, half dead, is compacted: its live, unread keys stay.
    c.set_max_bytes(40);
    assert!(a.iter().all(|k| c.contains(k, now)), "{:?}", c.keys());
    assert_eq!(c.stats().evictions - evictions, small_keys as u64);
    assert_eq!(c.get("a0", now).unwrap().value, b("vv"));
    c.validate().unwrap();
}
