//! A component that never finishes an inference, for the e2e test that the
//! host's deadline (`--rest_api_timeout_in_ms`) stops a guest stuck in a
//! loop: the epoch interruption must reach code that never calls the host.
//!
//! It answers the host's warm-up (`POST /vitrine/warmup`, with or without
//! `?run=0`) at once, so a version serving it turns AVAILABLE; every predict
//! (REST v1), infer (KServe v2, and so gRPC Predict) spins forever.

#[cfg(target_arch = "wasm32")]
mod component {
    use spin_sdk::http::{Request, Response};
    use spin_sdk::http_component;

    fn json(status: u16, body: &str) -> Response {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(body.to_string())
            .build()
    }

    #[http_component]
    fn handle(req: Request) -> Response {
        let path = req.path().to_string();
        if path == "/vitrine/warmup" {
            return json(200, "{}");
        }
        if path.ends_with(":predict") || path.ends_with("/infer") {
            // No host calls in here: only the epoch check the host's
            // compiler puts on the loop's back edge can stop it.
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        json(
            404,
            r#"{"error": "the spinner component answers predict and infer only"}"#,
        )
    }
}
