//! The attach protocol spoken on a container's attach socket (and on the first-client
//! socketpair a foreground `run` hands to the monitor).
//!
//! Every frame is `kind: u8 | len: u32 BE | payload`. Client -> monitor: `Hello` (JSON
//! [`AttachStreams`], first frame on a fresh connection), `Stdin`, `StdinClose`,
//! `Resize` (rows u16 BE, cols u16 BE). Monitor -> client: `Stdout`, `Stderr`, `Exit`
//! (i32 BE exit code), after which the monitor closes the connection.

use std::io::{self, Read, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
    StdinClose = 3,
    Resize = 4,
    Exit = 5,
    Hello = 6,
}

impl FrameKind {
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => FrameKind::Stdin,
            1 => FrameKind::Stdout,
            2 => FrameKind::Stderr,
            3 => FrameKind::StdinClose,
            4 => FrameKind::Resize,
            5 => FrameKind::Exit,
            6 => FrameKind::Hello,
            _ => return None,
        })
    }
}

pub const MAX_PAYLOAD: usize = 1 << 20;

pub fn encode(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + payload.len());
    v.push(kind as u8);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

pub fn write_frame(w: &mut impl Write, kind: FrameKind, payload: &[u8]) -> io::Result<()> {
    w.write_all(&encode(kind, payload))
}

/// Reads one frame; `Ok(None)` on a clean EOF between frames.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(FrameKind, Vec<u8>)>> {
    let mut hdr = [0u8; 5];
    let mut off = 0;
    while off < 5 {
        let n = r.read(&mut hdr[off..])?;
        if n == 0 {
            return if off == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        off += n;
    }
    let kind = FrameKind::from_u8(hdr[0])
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad attach frame"))?;
    let len = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "attach frame too big",
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((kind, payload)))
}

/// Incremental decoder for a non-blocking reader (the monitor's side).
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn next_frame(&mut self) -> io::Result<Option<(FrameKind, Vec<u8>)>> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let kind = FrameKind::from_u8(self.buf[0])
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad attach frame"))?;
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "attach frame too big",
            ));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let payload = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Ok(Some((kind, payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_incremental() {
        let mut wire = Vec::new();
        write_frame(&mut wire, FrameKind::Stdout, b"hello").unwrap();
        write_frame(&mut wire, FrameKind::Exit, &7i32.to_be_bytes()).unwrap();
        let mut r = &wire[..];
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((FrameKind::Stdout, b"hello".to_vec()))
        );
        let mut d = Decoder::default();
        for b in &wire {
            d.push(std::slice::from_ref(b));
        }
        assert_eq!(d.next_frame().unwrap().unwrap().0, FrameKind::Stdout);
        let (k, p) = d.next_frame().unwrap().unwrap();
        assert_eq!((k, p), (FrameKind::Exit, 7i32.to_be_bytes().to_vec()));
        assert!(d.next_frame().unwrap().is_none());
    }
}
