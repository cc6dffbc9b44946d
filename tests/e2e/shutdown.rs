//! SIGTERM during load: in-flight requests complete and the process exits 0,
//! so rolling updates lose nothing.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let base = tiny_repo();
    let mut server = Server::start("hf-vit", &base, &["--tensorflow_inter_op_parallelism=1"]);
    let image = urlsafe_b64(&coco_jpeg());
    // Large batches on one instance: the requests queue and take a while.
    let body = json!({"instances": vec![image; 32]}).to_string();
    let url = server.url("/v1/models/hf-vit:predict");
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            std::thread::spawn(move || {
                let resp = client()
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .expect("in-flight request must not be cut off");
                let status = resp.status().as_u16();
                let reply: serde_json::Value = resp.json().expect("json");
                (status, reply["predictions"].as_array().map_or(0, Vec::len))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let exit = server.terminate();
    for c in clients {
        let (status, n) = c.join().expect("client thread");
        assert_eq!((status, n), (200, 32), "an in-flight request was lost");
    }
    assert!(
        exit.success(),
        "vitrine exited with {exit}:\n{}",
        server.log()
    );
    assert!(server.log().contains("shutting down"), "{}", server.log());
}
