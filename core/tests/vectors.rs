//! The golden bytes and ring placements produced by the Go original.

use bytes::BytesMut;
use groupcache_core::frame::{self, FrameDecoder};
use groupcache_core::ring::Ring;
use groupcache_core::testing::vectors;
use groupcache_core::wire::{encode_frame, Request, Response};

#[test]
fn every_frame_encodes_to_its_bytes_and_decodes_to_its_fields() {
    let frames = vectors::frames();
    assert!(frames.len() >= 10, "vectors look truncated");
    for v in frames {
        let mut out = BytesMut::new();
        let mut dec = FrameDecoder::new(frame::DEFAULT_MAX_FRAME);
        let mut wire = BytesMut::from(&v.frame[..]);
        let payload = dec.decode(&mut wire).unwrap().expect("whole frame");
        assert!(wire.is_empty());
        if v.request {
            let req = Request {
                group: v.group.clone(),
                key: v.key.clone(),
                ..Default::default()
            };
            encode_frame(&req, &mut out);
            assert_eq!(Request::decode_payload(&payload).unwrap(), req);
        } else {
            let resp = Response {
                value: v.value.clone().into(),
                code: v.code,
                ..Default::default()
            };
            encode_frame(&resp, &mut out);
            assert_eq!(Response::decode_payload(&payload).unwrap(), resp);
        }
        assert_eq!(
            hex(&out),
            hex(&v.frame),
            "encoding {:?}/{:?}/code {}",
            v.group,
            v.key,
            v.code
        );
    }
}

#[test]
fn every_ring_case_gives_the_listed_owner() {
    let rings = vectors::rings();
    assert!(!rings.is_empty());
    let mut checked = 0;
    for v in rings {
        let ring = Ring::with_peers(v.replicas, &v.peers);
        for (key, owner) in &v.owners {
            assert_eq!(
                ring.owner(key),
                Some(owner.as_str()),
                "key {key:?}, replicas {}, peers {:?}",
                v.replicas,
                v.peers
            );
            checked += 1;
        }
    }
    assert!(checked > 1000);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
