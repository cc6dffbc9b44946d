//! Read deadlines for gRPC connections, below HTTP/2: a client must send
//! the 24-byte connection preface within `--grpc_read_timeout_in_ms` of
//! connecting, and finish every frame within as long of its first byte.
//!
//! hyper's HTTP/2 keep-alive pings only start once the handshake is done,
//! and only a connection with no frames in flight is idle to it, so a client
//! that connects and says nothing, or stops in the middle of a frame, would
//! hold its connection (and a task) for ever. A connection idle *between*
//! frames is left alone: gRPC channels stay open between calls, and the
//! keep-alive pings cover those.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
const PREFACE_LEN: usize = 24;
/// An HTTP/2 frame header: 24-bit length, type, flags, stream id.
const FRAME_HEADER_LEN: usize = 9;

/// Where the reader is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// `n` bytes of the preface received.
    Preface(usize),
    /// `n` bytes of a frame header received (0: between frames).
    Header(usize, [u8; FRAME_HEADER_LEN]),
    /// This many payload bytes of the current frame still to come.
    Payload(usize),
}

impl Position {
    /// Advances over `bytes` just read.
    fn advance(mut self, mut bytes: &[u8]) -> Position {
        while !bytes.is_empty() {
            self = match self {
                Position::Preface(n) => {
                    let take = (PREFACE_LEN - n).min(bytes.len());
                    bytes = &bytes[take..];
                    if n + take == PREFACE_LEN {
                        Position::Header(0, [0; FRAME_HEADER_LEN])
                    } else {
                        Position::Preface(n + take)
                    }
                }
                Position::Header(n, mut header) => {
                    let take = (FRAME_HEADER_LEN - n).min(bytes.len());
                    header[n..n + take].copy_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if n + take < FRAME_HEADER_LEN {
                        Position::Header(n + take, header)
                    } else {
                        let length = usize::from(header[0]) << 16
                            | usize::from(header[1]) << 8
                            | usize::from(header[2]);
                        if length == 0 {
                            Position::Header(0, [0; FRAME_HEADER_LEN])
                        } else {
                            Position::Payload(length)
                        }
                    }
                }
                Position::Payload(left) => {
                    let take = left.min(bytes.len());
                    bytes = &bytes[take..];
                    if take == left {
                        Position::Header(0, [0; FRAME_HEADER_LEN])
                    } else {
                        Position::Payload(left - take)
                    }
                }
            };
        }
        self
    }

    /// Between frames: nothing owed, no deadline.
    fn idle(&self) -> bool {
        matches!(self, Position::Header(0, _))
    }
}

/// An accepted TCP connection whose reads must keep up: see the module doc.
pub struct DeadlineStream {
    io: TcpStream,
    timeout: Option<Duration>,
    position: Position,
    /// Armed while a preface or frame is owed.
    deadline: Pin<Box<Sleep>>,
}

impl DeadlineStream {
    pub fn new(io: TcpStream, timeout: Option<Duration>) -> DeadlineStream {
        let start = Instant::now() + timeout.unwrap_or_default();
        DeadlineStream {
            io,
            timeout,
            position: Position::Preface(0),
            deadline: Box::pin(tokio::time::sleep_until(start)),
        }
    }
}

impl AsyncRead for DeadlineStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let was_idle = this.position.idle();
                this.position = this.position.advance(&buf.filled()[before..]);
                // A frame's clock starts at its first byte.
                if was_idle
                    && !this.position.idle()
                    && let Some(timeout) = this.timeout
                {
                    this.deadline.as_mut().reset(Instant::now() + timeout);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.timeout.is_some()
                    && !this.position.idle()
                    && this.deadline.as_mut().poll(cx).is_ready()
                {
                    let what = match this.position {
                        Position::Preface(_) => "the HTTP/2 connection preface",
                        _ => "an HTTP/2 frame",
                    };
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the client did not finish {what} within --grpc_read_timeout_in_ms"
                        ),
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl Connected for DeadlineStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

/// The connections `listener` accepts, each with its read deadlines.
pub fn incoming(
    listener: TcpListener,
    timeout: Option<Duration>,
) -> impl tokio_stream::Stream<Item = io::Result<DeadlineStream>> {
    use tokio_stream::StreamExt as _;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(move |accepted| {
        let stream = accepted?;
        // gRPC replies are small and latency-bound.
        let _ = stream.set_nodelay(true);
        Ok(DeadlineStream::new(stream, timeout))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_followed_across_reads() {
        let settings = [0, 0, 0, 4, 0, 0, 0, 0, 0];
        // A HEADERS frame of 5 bytes on stream 1.
        let headers = [0, 0, 5, 1, 4, 0, 0, 0, 1];
        let mut p = Position::Preface(0);
        p = p.advance(&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..22]);
        assert_eq!(p, Position::Preface(22));
        let mut rest = b"\r\n".to_vec();
        rest.extend_from_slice(&settings);
        rest.extend_from_slice(&headers[..2]);
        p = p.advance(&rest);
        assert!(matches!(p, Position::Header(2, _)), "{p:?}");
        assert!(!p.idle());
        let mut rest = headers[2..].to_vec();
        rest.extend_from_slice(b"ab");
        p = p.advance(&rest);
        assert_eq!(p, Position::Payload(3));
        p = p.advance(b"cde");
        assert!(p.idle(), "{p:?}");
    }
}
