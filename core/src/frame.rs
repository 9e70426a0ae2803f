//! The bttcp framing of go-needle/groupcache: an 8-byte signed little-endian
//! payload length, then the payload.
//!
//! The decoder is incremental: feed it whatever bytes arrived, in any split,
//! and it hands out whole payloads. It checks the length header before it
//! reserves anything, so a peer that claims a huge or negative length gets an
//! error and costs nothing.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Size of the length header.
pub const HEADER_LEN: usize = 8;

/// Default largest payload accepted: 4 MiB.
pub const DEFAULT_MAX_FRAME: usize = 4 << 20;

/// Why a byte stream is not valid framing. Any of these closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header holds a negative length.
    #[error("negative frame length {0}")]
    Negative(i64),
    /// The header holds a length above the configured maximum.
    #[error("frame length {len} exceeds the maximum of {max} bytes")]
    TooLong {
        /// The length the header claims.
        len: u64,
        /// The configured maximum.
        max: usize,
    },
}

/// Incremental frame decoder.
///
/// ```
/// use bytes::BytesMut;
/// use groupcache_core::frame::{encode, FrameDecoder};
///
/// let mut wire = BytesMut::new();
/// encode(b"hello", &mut wire);
/// let mut dec = FrameDecoder::new(1024);
/// let mut buf = BytesMut::new();
/// // Bytes may arrive one at a time.
/// let mut out = None;
/// for b in wire.iter() {
///     buf.extend_from_slice(&[*b]);
///     if let Some(frame) = dec.decode(&mut buf).unwrap() {
///         out = Some(frame);
///     }
/// }
/// assert_eq!(&out.unwrap()[..], b"hello");
/// ```
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max: usize,
    /// Length of the payload whose header was consumed, if any.
    pending: Option<usize>,
}

impl FrameDecoder {
    /// A decoder that refuses payloads longer than `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { max, pending: None }
    }

    /// The largest payload accepted.
    pub fn max_frame(&self) -> usize {
        self.max
    }

    /// True when part of a frame (header or payload) has been seen but not the whole.
    pub fn is_mid_frame(&self, buf: &BytesMut) -> bool {
        self.pending.is_some() || !buf.is_empty()
    }

    /// Takes one payload off the front of `buf` if a whole frame is there.
    ///
    /// Returns `Ok(None)` when more bytes are needed. After an error the
    /// stream is unusable and the connection should be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let len = match self.pending {
            Some(len) => len,
            None => {
                if buf.len() < HEADER_LEN {
                    return Ok(None);
                }
                let len = check_len(i64::from_le_bytes(header(buf)), self.max)?;
                buf.advance(HEADER_LEN);
                self.pending = Some(len);
                len
            }
        };
        if buf.len() < len {
            return Ok(None);
        }
        self.pending = None;
        Ok(Some(buf.split_to(len).freeze()))
    }
}

fn header(buf: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&buf[..HEADER_LEN]);
    h
}

fn check_len(raw: i64, max: usize) -> Result<usize, FrameError> {
    if raw < 0 {
        return Err(FrameError::Negative(raw));
    }
    let len = raw as u64;
    if len > max as u64 {
        return Err(FrameError::TooLong { len, max });
    }
    Ok(len as usize)
}

/// Appends one frame holding `payload` to `dst`.
pub fn encode(payload: &[u8], dst: &mut BytesMut) {
    put_header(payload.len(), dst);
    dst.put_slice(payload);
}

/// Appends the header of a `len`-byte payload to `dst`, reserving room for
/// the payload too, so the caller can write it in place.
pub fn put_header(len: usize, dst: &mut BytesMut) {
    dst.reserve(HEADER_LEN + len);
    dst.put_i64_le(len as i64);
}

/// Decodes every whole frame in `data` at once; a helper for tests and tools.
///
/// Returns the payloads and the number of trailing bytes that do not form a
/// whole frame.
pub fn decode_all(data: &[u8], max: usize) -> Result<(Vec<Bytes>, usize), FrameError> {
    let mut dec = FrameDecoder::new(max);
    let mut buf = BytesMut::from(data);
    let mut out = Vec::new();
    while let Some(f) = dec.decode(&mut buf)? {
        out.push(f);
    }
    let rest = buf.len() + if dec.pending.is_some() { HEADER_LEN } else { 0 };
    Ok((out, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checked_before_payload_arrives() {
        let mut dec = FrameDecoder::new(16);
        let mut buf = BytesMut::from(&(-1i64).to_le_bytes()[..]);
        assert_eq!(dec.decode(&mut buf), Err(FrameError::Negative(-1)));
        let mut dec = FrameDecoder::new(16);
        let mut buf = BytesMut::from(&17i64.to_le_bytes()[..]);
        assert_eq!(
            dec.decode(&mut buf),
            Err(FrameError::TooLong { len: 17, max: 16 })
        );
        let mut buf = BytesMut::from(&i64::MAX.to_le_bytes()[..]);
        assert!(FrameDecoder::new(16).decode(&mut buf).is_err());
        // The buffer never grew to the claimed size.
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn empty_payload_is_a_frame() {
        let mut buf = BytesMut::from(&0i64.to_le_bytes()[..]);
        let f = FrameDecoder::new(16).decode(&mut buf).unwrap().unwrap();
        assert!(f.is_empty());
        assert!(buf.is_empty());
    }

    #[test]
    fn truncated_frame_waits() {
        let mut wire = BytesMut::new();
        encode(b"abcdef", &mut wire);
        let (frames, rest) = decode_all(&wire[..wire.len() - 1], 64).unwrap();
        assert!(frames.is_empty());
        assert_eq!(rest, wire.len() - 1);
    }
}
