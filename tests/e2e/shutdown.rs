//! SIGTERM during load: in-flight requests complete and the process exits 0,
//! so rolling updates lose nothing.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let base = tiny_repo();
    let mut server = Server::start(
        "hf-vit",
        &base,
        &["--inference=guest", "--tensorflow_inter_op_parallelism=1"],
    );
    // Large batches on one guest instance: the requests queue and take a while.
    let body = json!({"instances": vec![urlsafe_b64(&coco_jpeg()); 32]});
    let clients = predict_concurrently(&server, &body, 4);
    std::thread::sleep(Duration::from_millis(300));
    let exit = server.terminate();
    for c in clients {
        let reply = c
            .join()
            .expect("client thread")
            .expect("in-flight request must not be cut off");
        let n = reply.body["predictions"].as_array().map_or(0, Vec::len);
        assert_eq!(
            (reply.status, n),
            (200, 32),
            "an in-flight request was lost"
        );
    }
    assert!(
        exit.success(),
        "vitrine exited with {exit}:\n{}",
        server.log()
    );
    assert!(server.log().contains("shutting down"), "{}", server.log());
}
