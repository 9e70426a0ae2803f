//! An item's bytes in a segment: `[key length u32 LE][value length u32 LE]
//! [expiry u64 LE][key][value]`, parsed and written here alone.

/// Bytes of an item's header: key length, value length and expiry.
pub(super) const HEADER: usize = 16;

/// One parsed item.
#[derive(Debug, Clone, Copy)]
pub(super) struct Item {
    pub off: usize,
    pub klen: usize,
    pub vlen: usize,
    /// When it expires, as a tick; 0: never.
    pub expires: u64,
}

impl Item {
    /// Parses the item at `off` of `buf`, if a whole one is there.
    #[inline]
    pub fn at(buf: &[u8], off: usize) -> Option<Self> {
        let h = buf.get(off..off.checked_add(HEADER)?)?;
        let klen = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let vlen = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let expires = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
        let item = Self {
            off,
            klen,
            vlen,
            expires,
        };
        (item.end() <= buf.len()).then_some(item)
    }

    #[inline]
    pub fn len(&self) -> usize {
        HEADER + self.klen + self.vlen
    }

    #[inline]
    pub fn end(&self) -> usize {
        self.off + self.len()
    }

    #[inline]
    pub fn key<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.off + HEADER..self.off + HEADER + self.klen]
    }

    #[inline]
    pub fn value_range(&self) -> std::ops::Range<usize> {
        self.off + HEADER + self.klen..self.end()
    }
}

/// Writes a new value of the same length, and its expiry, over `item`.
pub(super) fn rewrite(buf: &mut [u8], item: &Item, value: &[u8], expires: u64) {
    buf[item.value_range()].copy_from_slice(value);
    buf[item.off + 8..item.off + HEADER].copy_from_slice(&expires.to_le_bytes());
}

/// Appends an item to `buf`.
pub(super) fn put_item(buf: &mut Vec<u8>, key: &[u8], value: &[u8], expires: u64) {
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
    buf.extend_from_slice(&expires.to_le_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
}
