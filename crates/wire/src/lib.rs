//! floe-wire: what travels, without any I/O. A [`Method`] names one request
//! kind, its request, response and error types, who may call it and its
//! limits; [`Wire`] is how a value becomes a frame body. The protocol
//! (floe-api) is written against this crate alone; the transport (floe-net)
//! carries any [`Method`] and never looks inside.

use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A value that can be put in a frame.
///
/// Every serde type is [`Wire`] through its canonical BCS encoding; [`Raw`]
/// carries bytes as they are, without a copy.
pub trait Wire: Sized + Send + Sync + 'static {
    /// The frame body for this value.
    fn to_frame(&self) -> Result<Bytes, WireError>;
    /// The frame body as pieces sent one after another. A value holding
    /// large shared buffers (sliver bytes) hands them over as they are
    /// instead of copying them into one body; the default is one piece.
    fn to_chunks(&self) -> Result<Vec<Bytes>, WireError> {
        Ok(vec![self.to_frame()?])
    }
    /// Parse a frame body. Must reject trailing bytes.
    fn from_frame(frame: Bytes) -> Result<Self, WireError>;
}

/// A frame body that is not a valid encoding of the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Wire for T {
    fn to_frame(&self) -> Result<Bytes, WireError> {
        // Sized first, so a multi-MiB body is written once rather than
        // copied through every doubling of a growing buffer.
        let wire = |e: bcs::Error| WireError(e.to_string());
        let mut body = Vec::with_capacity(bcs::serialized_size(self).map_err(wire)?);
        bcs::serialize_into(&mut body, self).map_err(wire)?;
        Ok(Bytes::from(body))
    }

    fn from_frame(frame: Bytes) -> Result<Self, WireError> {
        bcs::from_bytes(&frame).map_err(|e| WireError(e.to_string()))
    }
}

/// Bytes sent as they are: the frame body is the payload, shared, not copied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Raw(pub Bytes);

impl Wire for Raw {
    fn to_frame(&self) -> Result<Bytes, WireError> {
        Ok(self.0.clone())
    }

    fn from_frame(frame: Bytes) -> Result<Self, WireError> {
        Ok(Self(frame))
    }
}

/// Who may make a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone who completes the handshake, with or without a certificate.
    Public,
    /// Only callers whose certificate key is a committee member's network key.
    PeerOnly,
}

/// One request kind of a protocol built on floe-net.
pub trait Method: Send + Sync + 'static {
    /// The kind number on the wire; unique within a protocol.
    const KIND: u16;
    /// A name for logs, metrics and errors.
    const NAME: &'static str;
    /// Who may call it.
    const ACCESS: Access;
    /// Largest request body accepted, in bytes. A larger length prefix is
    /// refused before anything is read or allocated.
    const MAX_REQUEST_BYTES: u32;
    /// Largest response body accepted, in bytes.
    const MAX_RESPONSE_BYTES: u32;
    /// How long a caller waits for the whole exchange unless told otherwise.
    const TIMEOUT: Duration = Duration::from_secs(10);

    /// The request.
    type Request: Wire;
    /// The successful response.
    type Response: Wire;
    /// The typed error the handler may answer with.
    type Error: Wire + std::fmt::Display + std::fmt::Debug;
}
