//! Segmentation offload at any datagram size.
//!
//! quinn hands the socket up to ten datagrams of one size per send and the
//! kernel sends them as one segmentation-offload batch, but the kernel
//! refuses a batch over 64 KiB (it is built as one IP packet), and quinn-udp
//! drops a refused send in silence. With datagrams over a tenth of that,
//! whole batches would vanish and look like a black hole. [`SplitBatches`]
//! sits under quinn and splits a batch into sends of at most
//! [`MAX_BATCH_BYTES`], so path MTU discovery can climb as high as a path
//! carries (64 KiB on loopback, 9000 with jumbo frames) while a 1500-byte
//! path keeps its full ten-datagram batches.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

/// The most bytes one send may carry: a batch becomes one IP packet of at
/// most 65,535 bytes, UDP and IP headers included.
pub const MAX_BATCH_BYTES: usize = 65_000;

/// The methods of [`AsyncUdpSocket`] that a socket wrapping another
/// (`self.inner`) passes on as they are: receiving, and what the socket
/// can do.
macro_rules! pass_to_inner {
    () => {
        fn poll_recv(
            &self,
            cx: &mut Context,
            bufs: &mut [IoSliceMut<'_>],
            meta: &mut [RecvMeta],
        ) -> Poll<io::Result<usize>> {
            self.inner.poll_recv(cx, bufs, meta)
        }

        fn local_addr(&self) -> io::Result<SocketAddr> {
            self.inner.local_addr()
        }

        fn max_transmit_segments(&self) -> usize {
            self.inner.max_transmit_segments()
        }

        fn max_receive_segments(&self) -> usize {
            self.inner.max_receive_segments()
        }

        fn may_fragment(&self) -> bool {
            self.inner.may_fragment()
        }
    };
}
pub(crate) use pass_to_inner;

/// A UDP socket that splits segmentation-offload batches over
/// [`MAX_BATCH_BYTES`] into several sends.
#[derive(Debug)]
pub struct SplitBatches {
    inner: Arc<dyn AsyncUdpSocket>,
}

impl SplitBatches {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn AsyncUdpSocket>) -> Arc<Self> {
        Arc::new(Self { inner })
    }
}

/// The sends `transmit` is split into: whole datagrams, at most
/// [`MAX_BATCH_BYTES`] in each send (or one datagram, if it alone is more).
pub fn split<'a>(transmit: &Transmit<'a>) -> impl Iterator<Item = Transmit<'a>> + 'a {
    let segment = transmit
        .segment_size
        .unwrap_or(transmit.contents.len())
        .max(1);
    let per_send = (MAX_BATCH_BYTES / segment).max(1) * segment;
    let (destination, ecn, src_ip) = (transmit.destination, transmit.ecn, transmit.src_ip);
    transmit
        .contents
        .chunks(per_send)
        .map(move |contents| Transmit {
            destination,
            ecn,
            contents,
            segment_size: (contents.len() > segment).then_some(segment),
            src_ip,
        })
}

impl AsyncUdpSocket for SplitBatches {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Arc::clone(&self.inner).create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        if transmit.contents.len() <= MAX_BATCH_BYTES {
            return self.inner.try_send(transmit);
        }
        let mut sent_any = false;
        for part in split(transmit) {
            match self.inner.try_send(&part) {
                Ok(()) => sent_any = true,
                // The socket filled up after part of the batch went: the
                // rest is lost as a full queue loses it (QUIC resends it),
                // rather than asking quinn to send the whole batch again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && sent_any => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pass_to_inner!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transmit(contents: &[u8], segment_size: Option<usize>) -> Transmit<'_> {
        Transmit {
            destination: "127.0.0.1:9".parse().expect("address"),
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        }
    }

    fn shape(transmit: &Transmit) -> Vec<(usize, Option<usize>)> {
        split(transmit)
            .map(|part| (part.contents.len(), part.segment_size))
            .collect()
    }

    #[test]
    fn batches_split_on_datagram_boundaries_within_the_kernel_limit() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(10 * 30_000 - 7).collect();
        // Ten datagrams of 30,000 bytes (the last short): two per send.
        let big = transmit(&bytes, Some(30_000));
        assert_eq!(
            shape(&big),
            vec![
                (60_000, Some(30_000)),
                (60_000, Some(30_000)),
                (60_000, Some(30_000)),
                (60_000, Some(30_000)),
                (59_993, Some(30_000)),
            ]
        );
        let rejoined: Vec<u8> = split(&big).flat_map(|p| p.contents.to_vec()).collect();
        assert_eq!(rejoined, bytes);
        // Datagrams over half the limit go one per send, without offload.
        let bytes = vec![1u8; 3 * 65_000];
        assert_eq!(
            shape(&transmit(&bytes, Some(65_000))),
            vec![(65_000, None); 3]
        );
        // A batch within the limit is one send, as it came.
        let bytes = vec![1u8; 10 * 6_500];
        assert_eq!(
            shape(&transmit(&bytes, Some(6_500))),
            vec![(65_000, Some(6_500))]
        );
        // A lone datagram (an MTU probe) is never cut.
        let bytes = vec![1u8; 65_400];
        assert_eq!(shape(&transmit(&bytes, None)), vec![(65_400, None)]);
    }
}
