//! Outgoing frames as the service encodes them: every performative with all its fields.
//!
//! fe2o3-amqp encodes a performative's list without its trailing null or default fields (which
//! AMQP 1.0 allows, section 1.4). The Python SDK's pure-Python AMQP stack (`azure-eventhub` 5.15
//! `_pyamqp`) does not accept that: it indexes the decoded field list by position
//! (`_connection.py` `_incoming_open` reads `frame[4]` and `frame[9]`, `link.py` `frame[13]`,
//! `receiver.py` the payload at `frame[11]` of a transfer), as the service always sends every
//! field. So the bytes fe2o3 writes pass through [`PadStream`], which appends nulls to each
//! performative's list up to its full field count, and gives a sender's attach a null
//! `initial-delivery-count` its value 0 (fe2o3 elides the default; Python detaches a link without
//! one, `receiver.py` `_incoming_attach`). Nothing else changes: a missing trailing field and a
//! null one mean the same in AMQP.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The number of fields of a performative by descriptor code (AMQP 1.0 part 2.7 and 5.3).
fn full_count(frame_type: u8, code: u64) -> Option<usize> {
    match (frame_type, code) {
        (0, 0x10) => Some(10), // open
        (0, 0x11) => Some(8),  // begin
        (0, 0x12) => Some(14), // attach
        (0, 0x13) => Some(11), // flow
        (0, 0x14) => Some(11), // transfer
        (0, 0x15) => Some(6),  // disposition
        (0, 0x16) => Some(3),  // detach
        (0, 0x17) => Some(1),  // end
        (0, 0x18) => Some(1),  // close
        (1, 0x40) => Some(1),  // sasl-mechanisms
        (1, 0x42) => Some(1),  // sasl-challenge
        (1, 0x44) => Some(2),  // sasl-outcome
        _ => None,
    }
}

/// The encoded length of the AMQP value at the start of `b`.
fn value_len(b: &[u8]) -> Option<usize> {
    let c = *b.first()?;
    let n = |w: usize| -> Option<usize> {
        let bytes = b.get(1..1 + w)?;
        Some(bytes.iter().fold(0usize, |acc, x| (acc << 8) | usize::from(*x)))
    };
    let len = match c {
        0x00 => {
            let d = value_len(&b[1..])?;
            let v = value_len(b.get(1 + d..)?)?;
            1 + d + v
        }
        0x40..=0x46 => 1,
        0x50..=0x56 => 2,
        0x60..=0x61 => 3,
        0x70..=0x74 => 5,
        0x80..=0x84 => 9,
        0x94 | 0x98 => 17,
        0xa0..=0xa3 | 0xc0..=0xc1 | 0xe0 => 2 + n(1)?,
        0xb0..=0xb3 | 0xd0..=0xd1 | 0xf0 => 5 + n(4)?,
        _ => return None,
    };
    (len <= b.len()).then_some(len)
}

/// The descriptor code of a described value's descriptor (small ulong or ulong).
fn descriptor_code(b: &[u8]) -> Option<(u64, usize)> {
    match b.first()? {
        0x53 => Some((u64::from(*b.get(1)?), 2)),
        0x80 => Some((u64::from_be_bytes(b.get(1..9)?.try_into().ok()?), 9)),
        0x44 => Some((0, 1)),
        _ => None,
    }
}

/// The fields of a list encoding at the start of `b`, and the list's encoded length.
fn list_fields(b: &[u8]) -> Option<(Vec<&[u8]>, usize)> {
    let (count, mut at, total) = match b.first()? {
        0x45 => (0, 1, 1),
        0xc0 => (usize::from(*b.get(2)?), 3, 2 + usize::from(*b.get(1)?)),
        0xd0 => {
            let size = u32::from_be_bytes(b.get(1..5)?.try_into().ok()?) as usize;
            let count = u32::from_be_bytes(b.get(5..9)?.try_into().ok()?) as usize;
            (count, 9, 5 + size)
        }
        _ => return None,
    };
    let mut fields = Vec::with_capacity(count);
    for _ in 0..count {
        let len = value_len(b.get(at..total)?)?;
        fields.push(&b[at..at + len]);
        at += len;
    }
    (at == total).then_some((fields, total))
}

/// The frame body with its performative padded to its full field count, or `None` to leave the
/// body as it is (not a performative this module knows, or not decodable).
fn pad_body(frame_type: u8, body: &[u8]) -> Option<Vec<u8>> {
    if body.first() != Some(&0x00) {
        return None;
    }
    let (code, dlen) = descriptor_code(&body[1..])?;
    let full = full_count(frame_type, code)?;
    let list_at = 1 + dlen;
    let (mut fields, list_len) = list_fields(&body[list_at..])?;
    let nested_short = fields.iter().any(|f| pad_described(f).is_some());
    if fields.len() >= full && !(frame_type == 0 && code == 0x12) && !nested_short {
        return None;
    }
    const NULL: &[u8] = &[0x40];
    const UINT0: &[u8] = &[0x43];
    // Errors inside close, end, detach and rejected are lists too (`_connection.py`
    // `_incoming_close` reads `frame[0][2]`).
    let nested: Vec<Option<Vec<u8>>> = fields.iter().map(|f| pad_described(f)).collect();
    let mut fields: Vec<&[u8]> = fields.drain(..).zip(&nested).map(|(f, n)| n.as_deref().unwrap_or(f)).collect();
    while fields.len() < full {
        fields.push(NULL);
    }
    // attach: role false (sender) without initial-delivery-count -> 0.
    if frame_type == 0 && code == 0x12 && fields[2] == [0x42] && fields[9] == NULL {
        fields[9] = UINT0;
    }
    let mut out = Vec::with_capacity(body.len() + full + 8);
    out.extend_from_slice(&body[..list_at]);
    encode_list(&fields, &mut out);
    out.extend_from_slice(&body[list_at + list_len..]);
    Some(out)
}

/// A described list of a known type (error, rejected) padded to its full field count.
fn pad_described(value: &[u8]) -> Option<Vec<u8>> {
    if value.first() != Some(&0x00) {
        return None;
    }
    let (code, dlen) = descriptor_code(&value[1..])?;
    let full = match code {
        0x1d => 3, // error
        0x25 => 1, // rejected
        _ => return None,
    };
    let list_at = 1 + dlen;
    let (fields, _) = list_fields(&value[list_at..])?;
    if fields.len() >= full {
        return None;
    }
    let nested: Vec<Option<Vec<u8>>> = fields.iter().map(|f| pad_described(f)).collect();
    let mut fields: Vec<&[u8]> = fields.iter().zip(&nested).map(|(f, n)| n.as_deref().unwrap_or(f)).collect();
    while fields.len() < full {
        fields.push(&[0x40]);
    }
    let mut out = value[..list_at].to_vec();
    encode_list(&fields, &mut out);
    Some(out)
}

fn encode_list(fields: &[&[u8]], out: &mut Vec<u8>) {
    let items: usize = fields.iter().map(|f| f.len()).sum();
    if items < 255 {
        out.push(0xc0);
        out.push((items + 1) as u8);
        out.push(fields.len() as u8);
    } else {
        out.push(0xd0);
        out.extend_from_slice(&((items + 4) as u32).to_be_bytes());
        out.extend_from_slice(&(fields.len() as u32).to_be_bytes());
    }
    for f in fields {
        out.extend_from_slice(f);
    }
}

/// Rewrites one complete frame (header included) into `out`.
fn rewrite_frame(frame: &[u8], out: &mut Vec<u8>) {
    let doff = usize::from(frame[4]) * 4;
    let frame_type = frame[5];
    match (doff >= 8 && doff <= frame.len()).then(|| pad_body(frame_type, &frame[doff..])).flatten() {
        Some(body) => {
            out.extend_from_slice(&((doff + body.len()) as u32).to_be_bytes());
            out.extend_from_slice(&frame[4..doff]);
            out.extend_from_slice(&body);
        }
        None => out.extend_from_slice(frame),
    }
}

/// A stream whose writes are re-framed by [`rewrite_frame`], and whose reads stop after each
/// incoming `begin` until the server has answered it.
///
/// The Python SDK pipelines `begin` and `attach` without waiting for the reply; fe2o3's acceptor
/// maps the remote channel only when it sends its own `begin`, and closes the connection with
/// `amqp:not-found` on a frame for a channel it does not know yet (`connection/engine.rs`
/// `forward_to_session`). Holding the reads back keeps the frames in the order fe2o3 can take.
#[derive(Debug)]
pub struct PadStream<S> {
    inner: S,
    pending: Vec<u8>,
    out: Vec<u8>,
    /// Read side: bytes read, how many of them may be handed out, and what is left of the
    /// current frame.
    rbuf: Vec<u8>,
    ready: usize,
    frame_left: usize,
    in_begin: bool,
    begins_in: u64,
    begins_out: u64,
    read_waker: Option<std::task::Waker>,
}

impl<S> PadStream<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            out: Vec::new(),
            rbuf: Vec::new(),
            ready: 0,
            frame_left: 0,
            in_begin: false,
            begins_in: 0,
            begins_out: 0,
            read_waker: None,
        }
    }

    /// Decides how much of `rbuf` can be handed out next (at most one frame).
    fn next_ready(&mut self, eof: bool) -> bool {
        if self.frame_left > 0 {
            let n = self.frame_left.min(self.rbuf.len());
            self.ready = n;
            self.frame_left -= n;
            return n > 0;
        }
        let b = &self.rbuf;
        if b.len() < 8 {
            if eof && !b.is_empty() {
                self.ready = b.len();
                return true;
            }
            return false;
        }
        let size = if b.starts_with(b"AMQP") { 8 } else { u32::from_be_bytes(b[..4].try_into().unwrap()) as usize };
        let size = size.max(8);
        let doff = usize::from(b[4]) * 4;
        self.in_begin = !b.starts_with(b"AMQP") && b[5] == 0 && b.get(doff..doff + 3) == Some(&[0x00, 0x53, 0x11]);
        let n = size.min(b.len());
        self.ready = n;
        self.frame_left = size - n;
        true
    }

    /// Moves every complete frame (or protocol header) of `pending` to `out`.
    fn process(&mut self) {
        let mut at = 0;
        loop {
            let rest = &self.pending[at..];
            if rest.len() >= 8 && rest.starts_with(b"AMQP") {
                self.out.extend_from_slice(&rest[..8]);
                at += 8;
                continue;
            }
            if rest.len() < 8 {
                break;
            }
            let size = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            if size < 8 || rest.len() < size {
                if size < 8 {
                    // Not a frame: pass the bytes through untouched.
                    self.out.extend_from_slice(rest);
                    at = self.pending.len();
                }
                break;
            }
            let frame = &rest[..size];
            let doff = usize::from(frame[4]) * 4;
            if frame[5] == 0 && frame.get(doff..doff + 3) == Some(&[0x00, 0x53, 0x11]) {
                self.begins_out += 1;
                if let Some(w) = self.read_waker.take() {
                    w.wake();
                }
            }
            rewrite_frame(frame, &mut self.out);
            at += size;
        }
        self.pending.drain(..at);
    }
}

impl<S: AsyncWrite + Unpin> PadStream<S> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PadStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let mut eof = false;
        loop {
            if this.ready > 0 {
                let n = this.ready.min(buf.remaining());
                buf.put_slice(&this.rbuf[..n]);
                this.rbuf.drain(..n);
                this.ready -= n;
                if this.ready == 0 && this.frame_left == 0 && this.in_begin {
                    this.in_begin = false;
                    this.begins_in += 1;
                }
                return Poll::Ready(Ok(()));
            }
            if this.begins_in > this.begins_out {
                this.read_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            if this.next_ready(eof) {
                continue;
            }
            if eof {
                return Poll::Ready(Ok(()));
            }
            let mut tmp = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut tmp);
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                eof = true;
            }
            this.rbuf.extend_from_slice(rb.filled());
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PadStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // Bounded: accept more only once what was rewritten is (nearly) written out.
        if self.out.len() > 256 * 1024 {
            std::task::ready!(self.poll_drain(cx))?;
        }
        self.pending.extend_from_slice(buf);
        self.process();
        let _ = self.poll_drain(cx)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_a_detach_and_sets_a_senders_initial_delivery_count() {
        // detach: handle 1, closed true (2 of 3 fields).
        let body = [0x00, 0x53, 0x16, 0xc0, 0x04, 0x02, 0x52, 0x01, 0x41];
        let mut frame = vec![0, 0, 0, 0, 2, 0, 0, 0];
        frame.extend_from_slice(&body);
        let len = frame.len() as u32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        let mut out = Vec::new();
        rewrite_frame(&frame, &mut out);
        assert_eq!(&out[8..], &[0x00, 0x53, 0x16, 0xc0, 0x05, 0x03, 0x52, 0x01, 0x41, 0x40]);
        assert_eq!(u32::from_be_bytes(out[..4].try_into().unwrap()) as usize, out.len());

        // attach: name "a", handle 0, role sender (false), nothing else.
        let body = [0x00, 0x53, 0x12, 0xc0, 0x06, 0x03, 0xa1, 0x01, b'a', 0x43, 0x42];
        let padded = pad_body(0, &body).unwrap();
        let (fields, _) = list_fields(&padded[3..]).unwrap();
        assert_eq!(fields.len(), 14);
        assert_eq!(fields[9], [0x43]);
        assert_eq!(fields[13], [0x40]);

        // a transfer's payload stays after the list.
        let body = [0x00, 0x53, 0x14, 0xc0, 0x03, 0x02, 0x43, 0x43, 0xde, 0xad];
        let padded = pad_body(0, &body).unwrap();
        let (fields, len) = list_fields(&padded[3..]).unwrap();
        assert_eq!(fields.len(), 11);
        assert_eq!(&padded[3 + len..], &[0xde, 0xad]);
    }
}
