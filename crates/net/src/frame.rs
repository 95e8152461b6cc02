//! Frame layout of one request/response exchange on one bidirectional stream.
//!
//! ```text
//! request:  kind u16 LE | length u32 LE | body (length bytes) | end of stream
//! response: status u8   | length u32 LE | body (length bytes) | end of stream
//! ```
//!
//! The length is checked against the limit of the request kind (or of the
//! caller's expectation, for responses) before a buffer is reserved.

use bytes::{Bytes, BytesMut};
use quinn::{ReadError, RecvStream};

/// Bytes of a request header.
pub const REQUEST_HEADER_LEN: usize = 6;
/// Bytes of a response header.
pub const RESPONSE_HEADER_LEN: usize = 5;

/// Largest typed-error body a caller accepts, whatever the method's
/// response limit (errors may carry proofs).
pub const MAX_ERROR_BYTES: u32 = 64 << 10;
/// Largest reason text (refused, bad request, unavailable).
pub const MAX_TEXT_BYTES: u32 = 4 << 10;

/// Application error codes used to reset or stop streams.
pub mod codes {
    use quinn::VarInt;
    /// The caller gave up (timeout or dropped future).
    pub const CANCELLED: VarInt = VarInt::from_u32(1);
    /// The request was refused before its body was read.
    pub const REFUSED: VarInt = VarInt::from_u32(2);
    /// The server is shutting down.
    pub const SHUTDOWN: VarInt = VarInt::from_u32(3);
    /// The server has no room for this connection or request now; retry
    /// later or on another node.
    pub const BUSY: VarInt = VarInt::from_u32(4);
    /// The caller did not read the answer within the server's deadline.
    pub const TOO_SLOW: VarInt = VarInt::from_u32(5);
}

/// The outcome class carried in a response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// The body is the method's response.
    Ok = 0,
    /// The body is the method's typed error.
    Failed = 1,
    /// The caller may not make this request; the body is a UTF-8 reason.
    Refused = 2,
    /// The request broke the framing or encoding; the body is a UTF-8 reason.
    BadRequest = 3,
    /// The server cannot serve now (shutting down); the body is a UTF-8 reason.
    Unavailable = 4,
}

impl Status {
    /// Parse a status byte.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => Self::Ok,
            1 => Self::Failed,
            2 => Self::Refused,
            3 => Self::BadRequest,
            4 => Self::Unavailable,
            _ => return None,
        })
    }
}

/// Encode a request header.
pub fn request_header(kind: u16, length: u32) -> Bytes {
    let mut header = [0u8; REQUEST_HEADER_LEN];
    header[..2].copy_from_slice(&kind.to_le_bytes());
    header[2..].copy_from_slice(&length.to_le_bytes());
    Bytes::copy_from_slice(&header)
}

/// Decode a request header.
pub fn parse_request_header(header: &[u8; REQUEST_HEADER_LEN]) -> (u16, u32) {
    (
        u16::from_le_bytes([header[0], header[1]]),
        u32::from_le_bytes([header[2], header[3], header[4], header[5]]),
    )
}

/// Encode a response header.
pub fn response_header(status: Status, length: u32) -> Bytes {
    let mut header = [0u8; RESPONSE_HEADER_LEN];
    header[0] = status as u8;
    header[1..].copy_from_slice(&length.to_le_bytes());
    Bytes::copy_from_slice(&header)
}

/// Decode a response header: the raw status byte and the length.
pub fn parse_response_header(header: &[u8; RESPONSE_HEADER_LEN]) -> (u8, u32) {
    (
        header[0],
        u32::from_le_bytes([header[1], header[2], header[3], header[4]]),
    )
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The stream ended before the frame did.
    #[error("the stream ended after {got} of {expected} bytes")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes the header announced.
        expected: usize,
    },
    /// Bytes followed the frame.
    #[error("unexpected bytes after the end of the frame")]
    TrailingBytes,
    /// The stream failed underneath.
    #[error("stream failed: {0}")]
    Stream(#[from] ReadError),
}

/// Read exactly `N` header bytes.
pub async fn read_header<const N: usize>(recv: &mut RecvStream) -> Result<[u8; N], FrameError> {
    let mut header = [0u8; N];
    let mut filled = 0;
    while filled < N {
        match recv.read(&mut header[filled..]).await? {
            Some(n) => filled += n,
            None => {
                return Err(FrameError::Truncated {
                    got: filled,
                    expected: N,
                })
            }
        }
    }
    Ok(header)
}

/// Read a body of exactly `length` bytes, then the end of the stream.
///
/// A body that arrives in one chunk is returned without a copy; otherwise the
/// chunks are gathered into one buffer of exactly `length` bytes.
pub async fn read_body(recv: &mut RecvStream, length: usize) -> Result<Bytes, FrameError> {
    let mut whole: Option<Bytes> = None;
    let mut buffer: Option<BytesMut> = None;
    let mut got = 0;
    while got < length {
        let Some(chunk) = recv.read_chunk(length - got, true).await? else {
            return Err(FrameError::Truncated {
                got,
                expected: length,
            });
        };
        got += chunk.bytes.len();
        if got == length && buffer.is_none() {
            whole = Some(chunk.bytes);
        } else {
            buffer
                .get_or_insert_with(|| BytesMut::with_capacity(length))
                .extend_from_slice(&chunk.bytes);
        }
    }
    if recv.read_chunk(1, true).await?.is_some() {
        return Err(FrameError::TrailingBytes);
    }
    Ok(whole
        .or_else(|| buffer.map(BytesMut::freeze))
        .unwrap_or_default())
}
