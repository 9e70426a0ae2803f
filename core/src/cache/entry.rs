//! What the index holds per entry: where its item is (segment and offset)
//! and, in the offset's top bits, its queue and reads counted. 8 bytes, so
//! the index costs 8 bytes and a control byte per slot.

/// Where an entry's item is. 8 bytes: this is what the index holds per
/// entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub seg: u32,
    /// Offset of the item in its segment; the top three bits are flags: a
    /// read count in two ([`FREQ_SHIFT`]) and [`MAIN`].
    pub off: u32,
}

/// [`Entry::off`]'s top two bits count reads since the item was last
/// written or moved, up to [`FREQ_MAX`]: eviction gives a read item
/// another round, one per read.
const FREQ_SHIFT: u32 = 30;
/// One read in [`Entry::off`].
const FREQ_ONE: u32 = 1 << FREQ_SHIFT;
/// Most reads counted.
const FREQ_MAX: u32 = 3;
/// [`Entry::off`]'s read count bits.
const FREQ_MASK: u32 = FREQ_MAX << FREQ_SHIFT;

/// [`Entry::off`]'s flag: the entry is in the main queue's store, not the
/// small one's.
pub(super) const MAIN: u32 = 1 << 29;

/// Largest segment: offsets leave [`Entry::off`]'s three flag bits free.
pub(super) const MAX_SEGMENT_SIZE: usize = 1 << 29;

impl Entry {
    #[inline]
    pub fn offset(&self) -> usize {
        (self.off & !(FREQ_MASK | MAIN)) as usize
    }

    /// Reads counted since the item was written or moved.
    #[inline]
    pub fn freq(&self) -> u32 {
        self.off >> FREQ_SHIFT
    }

    /// Counts a read, up to [`FREQ_MAX`].
    #[inline]
    pub fn count_read(&mut self) {
        if self.off < FREQ_MASK {
            self.off += FREQ_ONE;
        }
    }

    /// The same entry with read count `freq`.
    #[inline]
    pub fn with_freq(self, freq: u32) -> Self {
        Self {
            seg: self.seg,
            off: self.off & !FREQ_MASK | freq.min(FREQ_MAX) << FREQ_SHIFT,
        }
    }

    /// True if both point at the same item, whatever their read counts.
    #[inline]
    pub fn same_item(&self, other: &Entry) -> bool {
        self.seg == other.seg && (self.off ^ other.off) & !FREQ_MASK == 0
    }

    /// Which queue's store holds the item: 0 small, 1 main.
    #[inline]
    pub fn queue(&self) -> usize {
        usize::from(self.off & MAIN != 0)
    }
}
