//! Length-prefixed CBOR frames.
//!
//! A frame is a 4-byte big-endian body length followed by exactly that many bytes of
//! CBOR. The length is checked against [`MAX_FRAME_LEN`](crate::MAX_FRAME_LEN) *before*
//! any allocation, and the body must decode to exactly one value with nothing left over.

use std::io::{self, Read, Write};

use serde::{de::DeserializeOwned, Serialize};

use crate::MAX_FRAME_LEN;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The underlying stream failed.
    #[error("channel I/O failed: {0}")]
    Io(#[from] io::Error),
    /// The peer announced a frame larger than the limit.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("channel closed in the middle of a frame ({got} of {want} bytes)")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes announced.
        want: usize,
    },
    /// The body is not valid CBOR for the expected message type.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The body decoded, but bytes were left over after the value.
    #[error("malformed message: {0} trailing bytes after the value")]
    TrailingBytes(usize),
    /// A message could not be serialized (a bug, or a value too large for one frame).
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// Encodes `msg` as one frame: length prefix plus CBOR body.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; 4];
    ciborium::into_writer(msg, &mut out).map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = out.len() - 4;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    // Cannot truncate: len <= MAX_FRAME_LEN < u32::MAX.
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Writes `msg` as one frame and flushes.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let bytes = encode_frame(msg)?;
    w.write_all(&bytes)?;
    w.flush()?;
    Ok(())
}

/// Decodes a frame body (without its length prefix) into a message.
pub fn decode_frame_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let mut cursor = io::Cursor::new(body);
    let value: T =
        ciborium::from_reader(&mut cursor).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let left = body.len() - cursor.position() as usize;
    if left != 0 {
        return Err(FrameError::TrailingBytes(left));
    }
    Ok(value)
}

/// Reads one frame. Returns `Ok(None)` on a clean end of stream at a frame boundary.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<Option<T>, FrameError> {
    let mut len_buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len_buf[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Truncated { got, want: 4 }),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes(len_buf) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let mut body = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match r.read(&mut body[got..]) {
            Ok(0) => return Err(FrameError::Truncated { got, want: len }),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    decode_frame_body(&body).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HostToKeep, KeepToHost};

    #[test]
    fn round_trip() {
        let msg = KeepToHost::Stdout(b"hello".to_vec());
        let bytes = encode_frame(&msg).unwrap();
        let back: KeepToHost = read_frame(&mut &bytes[..]).unwrap().unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn clean_eof_is_none() {
        let empty: &[u8] = &[];
        assert!(read_frame::<_, KeepToHost>(&mut &empty[..])
            .unwrap()
            .is_none());
    }

    #[test]
    fn oversized_length_rejected_before_allocation() {
        let bytes = u32::MAX.to_be_bytes();
        let err = read_frame::<_, KeepToHost>(&mut &bytes[..]).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn truncated_prefix_and_body() {
        let bytes = encode_frame(&HostToKeep::StdinClosed).unwrap();
        let err = read_frame::<_, HostToKeep>(&mut &bytes[..2]).unwrap_err();
        assert!(
            matches!(err, FrameError::Truncated { got: 2, want: 4 }),
            "{err}"
        );
        let err = read_frame::<_, HostToKeep>(&mut &bytes[..bytes.len() - 1]).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { .. }), "{err}");
    }

    #[test]
    fn trailing_bytes_rejected() {
        let mut body = Vec::new();
        ciborium::into_writer(&HostToKeep::StdinClosed, &mut body).unwrap();
        body.push(0);
        let err = decode_frame_body::<HostToKeep>(&body).unwrap_err();
        assert!(matches!(err, FrameError::TrailingBytes(1)), "{err}");
    }

    #[test]
    fn garbage_body_is_malformed() {
        let err = decode_frame_body::<HostToKeep>(&[0xff, 0x00, 0x13]).unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
    }

    #[test]
    fn unknown_variant_rejected() {
        let mut body = Vec::new();
        ciborium::into_writer(&"NoSuchMessage", &mut body).unwrap();
        let err = decode_frame_body::<HostToKeep>(&body).unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
    }

    #[test]
    fn every_truncation_of_a_launch_fails_cleanly() {
        let spec = crate::LaunchSpec::example();
        let bytes = encode_frame(&HostToKeep::Launch(Box::new(spec))).unwrap();
        for cut in 1..bytes.len() {
            assert!(
                read_frame::<_, HostToKeep>(&mut &bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
    }
}
