//! Overload and faults: at four times its capacity the server refuses the
//! excess with 503 and `Retry-After`, still answers bad requests with 400,
//! stays alive and serves normally once load drops; a client that hangs up
//! mid-request gives back its instance and its queue place.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get((v.len().saturating_sub(1) * 99) / 100)
        .copied()
        .unwrap_or_default()
}

#[test]
fn four_times_capacity_is_refused_with_503_and_service_recovers() {
    // Capacity: one instance plus two queued requests.
    let server = Server::start(
        "hf-vit",
        &tiny_repo(),
        &[
            "--inference=guest",
            "--tensorflow_inter_op_parallelism=1",
            "--max_queued_requests=2",
        ],
    );
    let valid = json!({"instances": vec![urlsafe_b64(&coco_jpeg()); 8]}).to_string();
    let invalid = json!({"instances": ["not base64!"]}).to_string();
    let url = server.url("/v1/models/hf-vit:predict");
    let clients = 12;
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (url, valid, invalid) = (url.clone(), valid.clone(), invalid.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                for round in 0..6 {
                    // One request in four is bad input.
                    let bad = (c + round) % 4 == 0;
                    let started = Instant::now();
                    let resp = client()
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(if bad { invalid.clone() } else { valid.clone() })
                        .send()
                        .expect("the server answers every request");
                    let retry = resp.headers().contains_key("retry-after");
                    seen.push((bad, resp.status().as_u16(), retry, started.elapsed()));
                }
                seen
            })
        })
        .collect();
    let seen: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("client thread"))
        .collect();
    let (mut served, mut refused) = (Vec::new(), Vec::new());
    for (bad, status, retry, took) in &seen {
        match (bad, status) {
            // Admission comes before parsing: under overload a bad request
            // may be shed with 503 before anyone reads it.
            (true, 400) => {}
            (true, 503) => assert!(retry, "a 503 without Retry-After"),
            (false, 200) => served.push(*took),
            (false, 503) => {
                assert!(retry, "a 503 without Retry-After");
                refused.push(*took);
            }
            other => panic!("unexpected {other:?} under overload: {seen:?}"),
        }
    }
    eprintln!(
        "{} requests at 4x capacity: {} valid served (p99 {:?}), {} valid refused with 503 (p99 {:?}), {} bad input answered 400 or 503",
        seen.len(),
        served.len(),
        p99(served.clone()),
        refused.len(),
        p99(refused.clone()),
        seen.len() - served.len() - refused.len()
    );
    assert!(!served.is_empty() && !refused.is_empty(), "{seen:?}");
    let (status, _) = server.get("/healthz");
    assert_eq!(status, 200);
    let (status, reply) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(
        status, 200,
        "service resumes at once when load drops: {reply}"
    );
}

/// Sends a predict over raw TCP and hangs up without reading the reply.
fn send_and_hang_up(server: &Server, body: &str, after: Duration) {
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    let head = format!(
        "POST /v1/models/hf-vit:predict HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).expect("head");
    tcp.write_all(body.as_bytes()).expect("body");
    std::thread::sleep(after);
    drop(tcp);
}

#[test]
fn a_client_that_hangs_up_gives_back_its_instance_and_queue_place() {
    let server = Server::start(
        "hf-vit",
        &tiny_repo(),
        &[
            "--inference=guest",
            "--tensorflow_inter_op_parallelism=1",
            "--max_queued_requests=1",
        ],
    );
    let long = json!({"instances": vec![urlsafe_b64(&coco_jpeg()); 32]}).to_string();
    // Hang up while running: the instance must come back to the pool.
    send_and_hang_up(&server, &long, Duration::from_millis(300));
    let (status, reply) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(status, 200, "the instance came back: {reply}");

    // Hang up while queued: the queue place must come back. With one
    // instance busy and room for one waiting request, a leaked place would
    // turn the next waiting request into a 503.
    let busy = predict_concurrently(
        &server,
        &json!({"instances": vec![urlsafe_b64(&coco_jpeg()); 32]}),
        1,
    );
    std::thread::sleep(Duration::from_millis(200));
    send_and_hang_up(&server, &long, Duration::from_millis(200));
    std::thread::sleep(Duration::from_millis(100));
    let (status, reply) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(
        status, 200,
        "the hung-up request's queue place came back: {reply}"
    );
    for b in busy {
        assert_eq!(b.join().expect("thread").expect("reply").status, 200);
    }
    assert!(server.get("/healthz").0 == 200);
}
