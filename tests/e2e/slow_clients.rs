//! Slow and stalled clients on the REST port: one that sends its headers
//! too slowly (slowloris), or nothing at all, is disconnected after
//! `--rest_api_header_read_timeout_in_ms`; one that stalls mid-body gets 408
//! after `--rest_api_body_read_timeout_in_ms`. Neither ever holds an
//! instance or a queue place, so everyone else is served meanwhile.
//!
//! The time bounds here detect a hang (a timeout that never fires); they
//! are several times the configured timeouts, not performance targets.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;

/// Generous: a timeout of 500 ms that has not fired after this long never will.
const HANG: Duration = Duration::from_secs(10);

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stream.set_read_timeout(Some(HANG)).expect("read timeout");
    stream
}

/// Reads until the server closes the connection and returns what it sent.
/// Panics if the connection is still open after [`HANG`].
fn read_until_closed(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            // A close with unread bytes in the server's buffer is a reset.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return received,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what}: the connection was still open after {HANG:?}")
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

#[test]
fn slow_or_silent_headers_are_disconnected_after_the_header_timeout() {
    let server = Server::start(
        "hf-vit",
        &tiny_repo(),
        &[
            "--inference=guest",
            "--rest_api_header_read_timeout_in_ms=500",
        ],
    );
    let started = Instant::now();
    // Half a request line, then nothing.
    let mut half = connect(&server);
    half.write_all(b"POST /v1/models/hf-v").expect("write");
    // Connected, and not a byte sent.
    let mut silent = connect(&server);
    // Slowloris: a byte every 100 ms keeps the connection busy but never
    // finishes the headers within the timeout (they would take 6 s).
    let mut drip = connect(&server);
    let mut drip_writer = drip.try_clone().expect("clone");
    let dripping = std::thread::spawn(move || {
        let head = b"GET /v1/models/hf-vit HTTP/1.1\r\nhost: localhost\r\nx-slow: yes\r\n\r\n";
        for byte in head {
            if drip_writer.write_all(&[*byte]).is_err() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    });
    // An idle keep-alive connection is closed as well: the server waits for
    // its next request's headers just as long.
    let mut idle = connect(&server);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .expect("write");

    // Meanwhile the server answers everyone else.
    let (status, reply) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(status, 200, "{reply}");

    for (stream, what) in [
        (&mut half, "half a request line"),
        (&mut silent, "a silent connection"),
        (&mut drip, "a slowloris client"),
    ] {
        let received = read_until_closed(stream, what);
        // Nothing to answer: no request ever arrived.
        assert!(
            received.is_empty(),
            "{what}: {}",
            String::from_utf8_lossy(&received)
        );
    }
    // No earlier than the configured timeout.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !dripping.join().expect("drip thread"),
        "the slowloris client sent all its headers: the timeout was reset by each byte"
    );
    let received =
        String::from_utf8_lossy(&read_until_closed(&mut idle, "idle keep-alive")).into_owned();
    assert!(
        received.starts_with("HTTP/1.1 200"),
        "the request itself was answered: {received}"
    );
    let (status, _) = server.get("/healthz");
    assert_eq!(status, 200);
}

#[test]
fn a_stalled_body_gets_408_and_holds_no_instance() {
    // One instance and no queue: a stalled request that held either would
    // turn the predict below into a 503.
    let server = Server::start(
        "hf-vit",
        &tiny_repo(),
        &[
            "--inference=guest",
            "--tensorflow_inter_op_parallelism=1",
            "--max_queued_requests=0",
            "--rest_api_body_read_timeout_in_ms=2000",
        ],
    );
    let mut stalled = connect(&server);
    let started = Instant::now();
    stalled
        .write_all(
            b"POST /v1/models/hf-vit:predict HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{\"instance",
        )
        .expect("write");
    // The same on KServe v2.
    let mut stalled_v2 = connect(&server);
    stalled_v2
        .write_all(
            b"POST /v2/models/hf-vit/infer HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100000\r\n\r\n{\"inputs\":",
        )
        .expect("write");

    let (status, reply) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(
        status, 200,
        "a stalled body must not hold the only instance or queue place: {reply}"
    );

    for (stream, what) in [(&mut stalled, "REST v1"), (&mut stalled_v2, "KServe v2")] {
        let received = String::from_utf8_lossy(&read_until_closed(stream, what)).into_owned();
        assert!(
            received.starts_with("HTTP/1.1 408"),
            "{what}: the stalled body is answered 408, then the connection closed: {received}"
        );
        let body = received.split("\r\n\r\n").nth(1).unwrap_or_default();
        let reply: serde_json::Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{what}: the 408 is not JSON ({e}): {body}"));
        let message = reply["error"].as_str().unwrap_or_default();
        assert!(
            message.contains("2000 ms") && message.contains("--rest_api_body_read_timeout_in_ms"),
            "{what}: {reply}"
        );
    }
    assert!(started.elapsed() >= Duration::from_millis(2000));
    let (status, reply) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(status, 200, "{reply}");
}
