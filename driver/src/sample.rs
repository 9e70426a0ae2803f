//! The sample data of the original README's quick start: the groups
//! "score" and "age", over the same three people.

use std::time::Duration;

use crate::{LoadError, Loader};

/// The "score" table.
pub const SCORE: &[(&str, &str)] = &[("Tom", "630"), ("Jack", "589"), ("Sam", "567")];
/// The "age" table.
pub const AGE: &[(&str, &str)] = &[("Tom", "15"), ("Jack", "17"), ("Sam", "15")];
/// The byte budget the original gives each sample group (`2<<10`).
pub const MAX_BYTES: usize = 2 << 10;
/// The TTL the original gives each sample group (1024 s).
pub const TTL: Duration = Duration::from_secs(1024);
/// The request script of the original README's API example, as
/// (group, key) pairs, including one key that does not exist.
pub const SCRIPT: &[(&str, &str)] = &[
    ("score", "Tom"),
    ("score", "Jack"),
    ("score", "Sam"),
    ("age", "Tom"),
    ("age", "Jack"),
    ("age", "Sam"),
    ("score", "Tom"),
    ("score", "kkk"),
];

/// The sample groups as (name, table).
pub const GROUPS: &[(&str, &[(&str, &str)])] = &[("score", SCORE), ("age", AGE)];

/// A loader over a sample table that answers "`<key>` not exist" like the
/// original for missing keys, and calls `on_load(key)` for every load (to
/// log or count them).
///
/// ```
/// use groupcache_driver::sample;
/// let loader = sample::loader(sample::SCORE, |key| println!("[SlowDB] search key {key}"));
/// # fn is_loader(_: impl groupcache_driver::Loader) {}
/// # is_loader(loader);
/// ```
pub fn loader(
    table: &'static [(&'static str, &'static str)],
    on_load: impl Fn(&str) + Send + Sync + 'static,
) -> impl Loader {
    move |key: String| {
        on_load(&key);
        let found = table.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        async move { found.ok_or_else(|| LoadError::NotFound(format!("{key} not exist"))) }
    }
}
