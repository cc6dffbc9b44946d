//! Slow and silent clients on the gRPC port: a connection that never sends
//! the HTTP/2 preface, sends it too slowly, or stops in the middle of a
//! frame is closed after `--grpc_read_timeout_in_ms`, while everyone else
//! is served. A connection idle *between* frames (a gRPC channel waiting
//! for its next call) stays open.
//!
//! As in `slow_clients.rs`, the time bounds detect a hang; they are not
//! performance targets.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;

/// A timeout of 500 ms that has not fired after this long never will.
const HANG: Duration = Duration::from_secs(10);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: the client's half of the handshake.
const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.grpc_addr()).expect("connect");
    stream.set_read_timeout(Some(HANG)).expect("read timeout");
    stream
}

/// Reads until the server closes the connection; panics if it is still
/// open after [`HANG`]. Returns when it closed.
fn wait_closed(stream: &mut TcpStream, what: &str) -> Instant {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            // The server's own SETTINGS come first; then the close.
            Ok(0) => return Instant::now(),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Instant::now(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what}: the connection was still open after {HANG:?}")
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

#[test]
fn silent_slow_and_stalled_grpc_connections_are_closed() {
    let server = Server::start_with_grpc(
        "hf-vit",
        &tiny_repo(),
        &["--inference=guest", "--grpc_read_timeout_in_ms=500"],
    );
    let started = Instant::now();
    let silent = connect(&server);
    let mut half_preface = connect(&server);
    half_preface.write_all(&PREFACE[..10]).expect("write");
    // Preface and SETTINGS, then 4 of a HEADERS frame header's 9 bytes.
    let mut stalled_header = connect(&server);
    stalled_header.write_all(PREFACE).expect("write");
    stalled_header.write_all(&SETTINGS).expect("write");
    stalled_header.write_all(&[0, 0, 100, 1]).expect("write");
    // A HEADERS frame that announces 100 bytes and sends 10.
    let mut stalled_payload = connect(&server);
    stalled_payload.write_all(PREFACE).expect("write");
    stalled_payload.write_all(&SETTINGS).expect("write");
    stalled_payload
        .write_all(&[0, 0, 100, 1, 4, 0, 0, 0, 1])
        .expect("write");
    stalled_payload.write_all(&[0; 10]).expect("write");
    // The preface a byte every 100 ms: 2.4 s, past the timeout however
    // busy each byte keeps the connection.
    let drip = connect(&server);
    let mut drip_writer = drip.try_clone().expect("clone");
    let dripping = std::thread::spawn(move || {
        for byte in PREFACE {
            if drip_writer.write_all(&[*byte]).is_err() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    });
    // A client that finished its handshake and waits for its next call.
    let mut idle = connect(&server);
    idle.write_all(PREFACE).expect("write");
    idle.write_all(&SETTINGS).expect("write");

    // Meanwhile gRPC clients are served.
    let result = grpc_predicts(&server, 2);
    let codes = grpc_codes(&result);
    assert_eq!(codes, ["OK", "OK"], "{result}");

    for (mut stream, what) in [
        (silent, "a silent connection"),
        (half_preface, "half a preface"),
        (stalled_header, "a stalled frame header"),
        (stalled_payload, "a stalled frame payload"),
        (drip, "a preface sent a byte at a time"),
    ] {
        let closed = wait_closed(&mut stream, what);
        assert!(
            closed.duration_since(started) >= Duration::from_millis(500),
            "{what}: closed before the timeout, after {:?}",
            closed.duration_since(started)
        );
    }
    assert!(
        !dripping.join().expect("drip thread"),
        "the dripping client sent its whole preface: the timeout restarted with each byte"
    );

    // The idle channel is still open well past the timeout: reading finds
    // the server's SETTINGS frames, then nothing, and no close.
    idle.set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("read timeout");
    let mut buf = [0u8; 4096];
    loop {
        match idle.read(&mut buf) {
            Ok(0) => panic!(
                "an idle gRPC connection was closed after {:?}",
                started.elapsed()
            ),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("idle connection: {e}"),
        }
    }
    let (status, _) = server.get("/healthz");
    assert_eq!(status, 200);
}
