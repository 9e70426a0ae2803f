//! Connection input: bytes in, connections closed.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::frame::{FrameDecoder, FrameError};

use super::{CloseReason, Conn, ConnId, Node, Output, Sent};

impl Node {
    /// Bytes arrived on a connection.
    pub fn handle_data(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let mut frames = Vec::new();
        let outbound;
        let decoded = match self.conns.get_mut(&conn) {
            None => return,
            Some(Conn::In(i)) => {
                outbound = false;
                i.last_active = now;
                i.buf.extend_from_slice(data);
                let r = decode_into(&mut i.dec, &mut i.buf, &mut frames);
                i.frame_started = match (i.dec.is_mid_frame(&i.buf), i.frame_started) {
                    (false, _) => None,
                    (true, Some(t)) if frames.is_empty() => Some(t),
                    (true, _) => Some(now),
                };
                r
            }
            Some(Conn::Out(o)) => {
                outbound = true;
                o.buf.extend_from_slice(data);
                decode_into(&mut o.dec, &mut o.buf, &mut frames)
            }
        };
        // Frames before a framing error are still answered, in order.
        let mut result = Ok(());
        for f in frames {
            result = if outbound {
                self.on_response(now, conn, &f)
            } else {
                self.on_request(now, conn, &f)
            };
            if result.is_err() {
                break;
            }
        }
        let result = result.and(decoded.map_err(CloseReason::Frame));
        match result {
            Err(reason) => self.close(now, conn, Some(reason)),
            Ok(()) => {
                self.arm_conn(conn);
                if let Some(Conn::Out(o)) = self.conns.get(&conn) {
                    let peer = o.peer.clone();
                    self.pump(now, &peer);
                }
            }
        }
    }

    /// The driver saw the connection close or fail (including a failed
    /// connect). Outstanding peer requests on it fall back to local loads.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        self.close(now, conn, None);
    }

    /// Forgets a connection; `reason` is set when the node itself closes it.
    pub(super) fn close(&mut self, now: Instant, conn: ConnId, reason: Option<CloseReason>) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.armed.remove(&conn);
        self.trim_timers();
        if let Some(reason) = reason {
            self.out.push_back(Output::Close { conn, reason });
        }
        match c {
            Conn::In(_) => self.inbound -= 1,
            Conn::Out(o) => {
                let pool = self.pools.get_mut(&o.peer).expect("pool of conn");
                pool.conns.retain(|&c| c != conn);
                let mut failed: Vec<Sent> = o.inflight.into();
                if o.connect_deadline.is_some() && pool.conns.is_empty() {
                    // The peer cannot be reached: fail what waits for it too.
                    pool.down_until = Some(now + self.cfg.peer_backoff);
                    failed.extend(pool.backlog.drain(..));
                }
                for s in failed {
                    self.peer_failed(s);
                }
                self.pump(now, &o.peer);
            }
        }
    }
}

pub(super) fn decode_into(
    dec: &mut FrameDecoder,
    buf: &mut BytesMut,
    out: &mut Vec<Bytes>,
) -> Result<(), FrameError> {
    while let Some(f) = dec.decode(buf)? {
        out.push(f);
    }
    Ok(())
}
