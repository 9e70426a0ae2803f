//! The incremental frame decoder against one-shot decoding.

use bytes::BytesMut;
use groupcache_core::frame::{decode_all, encode, FrameDecoder, FrameError};
use proptest::prelude::*;

/// Feeds `data` to a decoder in pieces whose sizes come from `cuts`.
fn decode_split(data: &[u8], cuts: &[usize], max: usize) -> Result<Vec<Vec<u8>>, FrameError> {
    let mut dec = FrameDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let n = cuts
            .get(i)
            .copied()
            .unwrap_or(1)
            .max(1)
            .min(data.len() - pos);
        i += 1;
        buf.extend_from_slice(&data[pos..pos + n]);
        pos += n;
        while let Some(f) = dec.decode(&mut buf)? {
            assert!(f.len() <= max);
            out.push(f.to_vec());
        }
    }
    Ok(out)
}

fn whole(data: &[u8], max: usize) -> Result<Vec<Vec<u8>>, FrameError> {
    decode_all(data, max).map(|(f, _)| f.iter().map(|b| b.to_vec()).collect())
}

proptest! {
    #[test]
    fn any_split_of_valid_frames_gives_the_same_frames(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8),
        cuts in prop::collection::vec(1usize..40, 0..64),
    ) {
        let mut wire = BytesMut::new();
        for p in &payloads {
            encode(p, &mut wire);
        }
        let split = decode_split(&wire, &cuts, 1024).unwrap();
        prop_assert_eq!(&split, &payloads);
        prop_assert_eq!(whole(&wire, 1024).unwrap(), payloads);
    }

    #[test]
    fn any_split_of_arbitrary_bytes_agrees_with_one_shot(
        data in prop::collection::vec(any::<u8>(), 0..200),
        cuts in prop::collection::vec(1usize..16, 0..64),
    ) {
        prop_assert_eq!(decode_split(&data, &cuts, 64), whole(&data, 64));
    }
}

#[test]
fn one_byte_at_a_time() {
    let mut wire = BytesMut::new();
    encode(b"first", &mut wire);
    encode(b"", &mut wire);
    encode(&[7u8; 500], &mut wire);
    let frames = decode_split(&wire, &[], 1024).unwrap();
    assert_eq!(frames, vec![b"first".to_vec(), vec![], vec![7u8; 500]]);
}

#[test]
fn negative_huge_and_truncated_lengths() {
    for len in [-1i64, i64::MIN, -4096] {
        let mut buf = BytesMut::from(&len.to_le_bytes()[..]);
        assert_eq!(
            FrameDecoder::new(1 << 20).decode(&mut buf),
            Err(FrameError::Negative(len))
        );
    }
    for len in [(1i64 << 20) + 1, i64::MAX, 1 << 40] {
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(&len.to_le_bytes());
        let cap = buf.capacity();
        assert!(matches!(
            FrameDecoder::new(1 << 20).decode(&mut buf),
            Err(FrameError::TooLong { .. })
        ));
        // Nothing was reserved for the claimed length.
        assert_eq!(buf.capacity(), cap);
    }
    // A header promising 100 bytes followed by 10: no frame, no error, and the
    // buffer holds only what arrived.
    let mut buf = BytesMut::from(&100i64.to_le_bytes()[..]);
    buf.extend_from_slice(&[1; 10]);
    let mut dec = FrameDecoder::new(1 << 20);
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), 10);
    assert!(buf.capacity() < 100);
}
