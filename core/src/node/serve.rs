//! Serving requests from peers and clients, and encoding the answers.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::frame::FrameDecoder;
use crate::wire::{
    encode_frame, Request, Response, CODE_ERROR, CODE_NO_GROUP, CODE_OK, NO_GROUP_MESSAGE,
};

use super::{CloseReason, Conn, ConnId, Error, Inbound, Node, Output, Refused, Waiter};

impl Node {
    /// A peer or client connected to this node's port from `addr`.
    pub fn accept(&mut self, now: Instant, addr: IpAddr) -> Result<ConnId, Refused> {
        if self.shutting_down {
            return Err(Refused::ShuttingDown);
        }
        if let Some(allow) = &self.cfg.allow {
            let addr = canonical(addr);
            if !allow.iter().any(|n| n.contains(&addr)) {
                return Err(Refused::NotAllowed);
            }
        }
        if self.inbound >= self.cfg.max_inbound {
            return Err(Refused::TooMany);
        }
        self.inbound += 1;
        let conn = ConnId(self.id());
        self.conns.insert(
            conn,
            Conn::In(Inbound {
                buf: BytesMut::new(),
                dec: FrameDecoder::new(self.cfg.max_frame),
                slots: VecDeque::new(),
                first_seq: 0,
                frame_started: None,
                last_active: now,
            }),
        );
        self.arm_conn(conn);
        Ok(conn)
    }

    pub(super) fn on_request(
        &mut self,
        now: Instant,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), CloseReason> {
        let req =
            Request::decode_payload(payload).map_err(|e| CloseReason::Protocol(e.to_string()))?;
        let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        if i.slots.len() >= self.cfg.max_pipeline {
            return Err(CloseReason::Overloaded);
        }
        let seq = i.first_seq + i.slots.len() as u64;
        i.slots.push_back(None);
        let Some(g) = self.groups.get_mut(req.group.as_str()) else {
            let resp = Response {
                value: Bytes::from_static(NO_GROUP_MESSAGE.as_bytes()),
                code: CODE_NO_GROUP,
                pipelining: req.ext,
                ..Default::default()
            };
            self.answer(now, conn, seq, resp);
            return Ok(());
        };
        g.stats.server_requests += 1;
        let hit = g
            .main
            .get(&req.key, now)
            .or_else(|| g.hot.get(&req.key, now));
        if let Some(hit) = hit {
            g.stats.cache_hits += 1;
            self.answer(
                now,
                conn,
                seq,
                ok_response(hit.value, hit.expires, now, req.ext),
            );
            return Ok(());
        }
        let w = Waiter::Serve {
            conn,
            seq,
            ext: req.ext,
        };
        self.join(now, &req.group, &req.key, w, req.from_peer);
        Ok(())
    }

    /// Fills answer `seq` of an inbound connection and writes every answer
    /// that is now ready in order.
    pub(super) fn answer(&mut self, now: Instant, conn: ConnId, seq: u64, resp: Response) {
        let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(slot) = seq
            .checked_sub(i.first_seq)
            .and_then(|k| i.slots.get_mut(k as usize))
        else {
            return;
        };
        let mut data = BytesMut::new();
        if seq == i.first_seq {
            // The common case: the oldest answer is ready; encode it straight
            // into the output instead of parking it in its slot.
            encode_frame(&resp, &mut data);
            i.slots.pop_front();
            i.first_seq += 1;
        } else {
            let mut frame = BytesMut::new();
            encode_frame(&resp, &mut frame);
            *slot = Some(frame.freeze());
        }
        while let Some(Some(_)) = i.slots.front() {
            let f = i.slots.pop_front().flatten().expect("checked");
            i.first_seq += 1;
            data.extend_from_slice(&f);
        }
        if data.is_empty() {
            return;
        }
        i.last_active = now;
        let done = self.shutting_down && i.slots.is_empty() && i.buf.is_empty();
        self.out.push_back(Output::Send {
            conn,
            data: data.freeze(),
        });
        if done {
            self.close(now, conn, Some(CloseReason::Shutdown));
        } else {
            self.arm_conn(conn);
        }
    }
}

/// IPv4-mapped IPv6 addresses match IPv4 networks.
pub(super) fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

pub(super) fn ok_response(
    value: Bytes,
    expires: Option<Instant>,
    now: Instant,
    ext: bool,
) -> Response {
    let ttl_ms = match (ext, expires) {
        (true, Some(t)) => {
            let left = t.saturating_duration_since(now);
            // Round up so a fresh value never reads as "no expiry" (0).
            (left.as_nanos().div_ceil(1_000_000) as u64).max(1)
        }
        _ => 0,
    };
    Response {
        value,
        code: CODE_OK,
        ttl_ms,
        not_found: false,
        pipelining: ext,
        load_failed: false,
    }
}

pub(super) fn error_response(e: &Error, ext: bool) -> Response {
    let msg = match e {
        Error::NotFound(m) | Error::Load(m) | Error::NoGroup(m) => m.to_string(),
        Error::Shutdown => e.to_string(),
    };
    Response {
        value: Bytes::from(msg),
        code: CODE_ERROR,
        ttl_ms: 0,
        not_found: ext && matches!(e, Error::NotFound(_)),
        pipelining: ext,
        load_failed: ext && matches!(e, Error::Load(_)),
    }
}
