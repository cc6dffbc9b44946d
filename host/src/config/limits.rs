//! Limits on hostile input and slow clients, from `vitrine serve`'s flags.
//!
//! The request limits are the component's to enforce (it is what parses
//! bodies and decodes images), so they reach it as environment variables:
//! Spin's `[component.environment]` and `wasmtime serve --env` set the same
//! knobs. The read timeouts belong to the front ends.

use std::time::Duration;

use vitrine_component::api::{MAX_INSTANCES_ENV, MAX_JSON_DEPTH_ENV};
use vitrine_component::preprocess::{MAX_IMAGE_DIMENSION_ENV, MAX_IMAGE_PIXELS_ENV};

use crate::config::cli::ServeArgs;

/// The component's request and decode limits, as its environment.
pub fn guest_env(args: &ServeArgs) -> Vec<(&'static str, String)> {
    vec![
        (
            MAX_INSTANCES_ENV,
            args.max_instances_per_request.to_string(),
        ),
        (MAX_JSON_DEPTH_ENV, args.max_json_depth.to_string()),
        (MAX_IMAGE_PIXELS_ENV, args.max_image_pixels.to_string()),
        (
            MAX_IMAGE_DIMENSION_ENV,
            args.max_image_dimension.to_string(),
        ),
    ]
}

/// A flag in milliseconds as a timeout; 0 means none.
pub fn timeout(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// How long one gRPC call may take in all: time to receive its message (the
/// REST body's budget) plus the guest's own. It is what frees a stream
/// whose client stalls mid-message; tonic answers such a call CANCELLED.
pub fn grpc_call_timeout(args: &ServeArgs) -> Option<Duration> {
    let body = timeout(args.rest_api_body_read_timeout_in_ms)?;
    Some(body + Duration::from_millis(args.rest_api_timeout_in_ms))
}

/// The limits as `--check-config` prints them.
pub fn to_json(args: &ServeArgs) -> serde_json::Value {
    serde_json::json!({
        "rest_api_header_read_timeout_in_ms": args.rest_api_header_read_timeout_in_ms,
        "rest_api_body_read_timeout_in_ms": args.rest_api_body_read_timeout_in_ms,
        "grpc_call_timeout_in_ms": grpc_call_timeout(args).map(|d| d.as_millis() as u64),
        "grpc_read_timeout_in_ms": args.grpc_read_timeout_in_ms,
        "max_instances_per_request": args.max_instances_per_request,
        "max_image_pixels": args.max_image_pixels,
        "max_image_dimension": args.max_image_dimension,
        "max_json_depth": args.max_json_depth,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::cli::{Cli, Command};

    fn serve(flags: &[&str]) -> Result<ServeArgs, clap::Error> {
        let args = ["vitrine", "serve"].iter().chain(flags);
        match Cli::try_parse_from(args)?.command {
            Command::Serve(s) => Ok(*s),
            _ => panic!("serve expected"),
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let args = serve(&[]).expect("defaults");
        assert_eq!(
            guest_env(&args),
            vec![
                ("VITRINE_MAX_INSTANCES", "64".to_string()),
                ("VITRINE_MAX_JSON_DEPTH", "32".to_string()),
                ("VITRINE_MAX_IMAGE_PIXELS", "40000000".to_string()),
                ("VITRINE_MAX_IMAGE_DIMENSION", "16384".to_string()),
            ]
        );
        assert_eq!(
            (
                args.rest_api_header_read_timeout_in_ms,
                args.rest_api_body_read_timeout_in_ms
            ),
            (10_000, 30_000)
        );
        assert_eq!(grpc_call_timeout(&args), Some(Duration::from_secs(60)));
    }

    #[test]
    fn flags_reach_the_guest_and_bad_values_are_refused() {
        let args = serve(&[
            "--max_instances_per_request=2",
            "--max_json_depth=5",
            "--max_image_pixels=1000",
            "--max_image_dimension=50",
            "--rest_api_body_read_timeout_in_ms=0",
        ])
        .expect("valid flags");
        let env = guest_env(&args);
        for (name, value) in [
            ("VITRINE_MAX_INSTANCES", "2"),
            ("VITRINE_MAX_JSON_DEPTH", "5"),
            ("VITRINE_MAX_IMAGE_PIXELS", "1000"),
            ("VITRINE_MAX_IMAGE_DIMENSION", "50"),
        ] {
            assert!(env.contains(&(name, value.to_string())), "{name}: {env:?}");
        }
        assert_eq!(timeout(args.rest_api_body_read_timeout_in_ms), None);
        assert_eq!(grpc_call_timeout(&args), None);
        // The component reads the same values back.
        let read = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
        let limits = vitrine_component::api::RequestLimits::from_vars(read);
        assert_eq!((limits.max_instances, limits.max_json_depth), (2, 5));
        for bad in [
            "--max_instances_per_request=0",
            "--max_json_depth=0",
            "--max_json_depth=128",
            "--max_image_pixels=0",
            "--max_image_dimension=-1",
        ] {
            assert!(serve(&[bad]).is_err(), "{bad} was accepted");
        }
    }
}
