//! Bounds on what a request body may contain, from the host's flags through
//! the environment, and the checks that apply them before parsing.

use super::error::ApiError;

/// Bounds on what a request body may contain. The `vitrine` host sets them
/// from its flags through the component's environment, so Spin's
/// `[component.environment]` and `wasmtime serve --env` set them the same way.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Images per request: `--max_instances_per_request`, [`MAX_INSTANCES_ENV`].
    pub max_instances: usize,
    pub max_top_k: usize,
    /// Nesting of JSON arrays and objects: `--max_json_depth`, [`MAX_JSON_DEPTH_ENV`].
    pub max_json_depth: usize,
}

pub const MAX_INSTANCES_ENV: &str = "VITRINE_MAX_INSTANCES";
pub const MAX_INSTANCES_FLAG: &str = "--max_instances_per_request";
pub const DEFAULT_MAX_INSTANCES: usize = 64;
pub const MAX_JSON_DEPTH_ENV: &str = "VITRINE_MAX_JSON_DEPTH";
pub const MAX_JSON_DEPTH_FLAG: &str = "--max_json_depth";
/// A predict body needs 4 levels, a KServe v2 body with pixel tensors 8.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 32;
/// serde_json refuses deeper nesting (its recursion limit) whatever the
/// limit says.
pub const MAX_JSON_DEPTH_CEILING: usize = 127;

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_instances: DEFAULT_MAX_INSTANCES,
            max_top_k: 1000,
            max_json_depth: DEFAULT_MAX_JSON_DEPTH,
        }
    }
}

impl RequestLimits {
    /// The limits in the process environment, defaults for those unset.
    pub fn from_env() -> RequestLimits {
        RequestLimits::from_vars(crate::variables::environment)
    }

    /// The limits `var` gives by variable name.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> RequestLimits {
        let default = RequestLimits::default();
        RequestLimits {
            max_instances: env_limit(&var, MAX_INSTANCES_ENV, default.max_instances, usize::MAX),
            max_top_k: default.max_top_k,
            max_json_depth: env_limit(
                &var,
                MAX_JSON_DEPTH_ENV,
                default.max_json_depth,
                MAX_JSON_DEPTH_CEILING,
            ),
        }
    }
}

/// A positive integer limit from the variable `name`, at most `max`. An unset
/// variable gives `default`; an unusable one gives `default` too, with a
/// warning on stderr: a typo in a manifest must not take the model down.
pub fn env_limit<T>(var: &impl Fn(&str) -> Option<String>, name: &str, default: T, max: T) -> T
where
    T: std::str::FromStr + PartialOrd + From<u8> + Copy + std::fmt::Display,
{
    let Some(text) = var(name).filter(|v| !v.trim().is_empty()) else {
        return default;
    };
    match text.trim().parse::<T>() {
        Ok(n) if n >= T::from(1) && n <= max => n,
        Ok(n) if n > max => {
            crate::warn!("{name}={text} is above the largest allowed, {max}; using {max}");
            max
        }
        _ => {
            crate::warn!("{name}={text:?} is not a positive integer; using the default, {default}");
            default
        }
    }
}

/// Refuses more than `limit` images in one request, naming the flag.
pub fn check_instances(count: usize, limit: usize, what: &str) -> Result<(), ApiError> {
    if count <= limit {
        return Ok(());
    }
    Err(ApiError::invalid(format!(
        "{count} {what} in one request; the limit is {limit} ({MAX_INSTANCES_FLAG}, {MAX_INSTANCES_ENV}). Split the batch into several requests"
    )))
}

/// Refuses JSON that nests arrays and objects deeper than `max`, in one pass
/// over the bytes before anything is parsed: the parser's time and stack
/// grow with the nesting, and no valid request nests deeply. Strings are
/// skipped; malformed JSON is left for the parser to describe.
pub fn check_json_depth(body: &[u8], max: usize) -> Result<(), ApiError> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                // Skip to the closing quote; a backslash escapes the next byte.
                i += 1;
                loop {
                    let next = body
                        .get(i..)
                        .and_then(|rest| rest.iter().position(|b| *b == b'"' || *b == b'\\'));
                    match next {
                        Some(offset) if body[i + offset] == b'\\' => i += offset + 2,
                        Some(offset) => {
                            i += offset;
                            break;
                        }
                        // Unterminated: the parser will say so.
                        None => return Ok(()),
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(ApiError::invalid(format!(
                        "request JSON nests arrays and objects more than {max} levels deep; the limit is {max} ({MAX_JSON_DEPTH_FLAG}, {MAX_JSON_DEPTH_ENV})"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::request::PredictRequest;

    fn parse(body: &str) -> Result<PredictRequest, ApiError> {
        PredictRequest::parse(body.as_bytes(), &RequestLimits::default())
    }

    #[test]
    fn limits_come_from_the_environment() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let limits = RequestLimits::from_vars(vars(&[]));
        assert_eq!((limits.max_instances, limits.max_json_depth), (64, 32));
        let limits = RequestLimits::from_vars(vars(&[
            (MAX_INSTANCES_ENV, "2"),
            (MAX_JSON_DEPTH_ENV, " 5 "),
        ]));
        assert_eq!((limits.max_instances, limits.max_json_depth), (2, 5));
        // Unusable values fall back to the default; too large ones to the ceiling.
        let limits = RequestLimits::from_vars(vars(&[
            (MAX_INSTANCES_ENV, "0"),
            (MAX_JSON_DEPTH_ENV, "1000"),
        ]));
        assert_eq!((limits.max_instances, limits.max_json_depth), (64, 127));
        let limits = RequestLimits::from_vars(vars(&[(MAX_INSTANCES_ENV, "many")]));
        assert_eq!(limits.max_instances, 64);

        let two = RequestLimits {
            max_instances: 2,
            ..RequestLimits::default()
        };
        let body = br#"{"instances":["aGk","aGk","aGk"]}"#;
        let e = PredictRequest::parse(body, &two).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.message.contains("3 instances") && e.message.contains("limit is 2"),
            "{}",
            e.message
        );
        assert!(PredictRequest::parse(br#"{"instances":["aGk","aGk"]}"#, &two).is_ok());
    }

    #[test]
    fn json_depth_is_checked_before_parsing() {
        let ok = |body: &str, max| check_json_depth(body.as_bytes(), max).is_ok();
        assert!(ok(r#"{"instances":[{"b64":"aGk"}]}"#, 3));
        assert!(!ok(r#"{"instances":[{"b64":"aGk"}]}"#, 2));
        assert!(ok("[[]][[]]", 2), "siblings do not add up");
        // Brackets inside strings, escaped quotes included, are not nesting.
        assert!(ok(r#"["[[[{{{", "\"[[[", "\\"]"#, 1));
        assert!(
            !ok(r#"["\\", [[]]]"#, 2),
            "an escaped backslash ends before the quote"
        );
        // Unterminated strings and stray closers are the parser's to report.
        assert!(ok(r#"["[[[["#, 1));
        assert!(ok("]]]]{", 1));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = parse(&deep).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.message.contains("more than 32 levels deep")
                && e.message.contains(MAX_JSON_DEPTH_FLAG),
            "{}",
            e.message
        );
        // At the ceiling the parser still accepts what the check lets through.
        let at_ceiling = format!(
            r#"{{"instances":["aGk"],"x":{}{}}}"#,
            "[".repeat(MAX_JSON_DEPTH_CEILING - 1),
            "]".repeat(MAX_JSON_DEPTH_CEILING - 1)
        );
        let ceiling = RequestLimits {
            max_json_depth: MAX_JSON_DEPTH_CEILING,
            ..RequestLimits::default()
        };
        assert!(PredictRequest::parse(at_ceiling.as_bytes(), &ceiling).is_ok());
        let past_ceiling = format!(
            r#"{{"instances":["aGk"],"x":{}{}}}"#,
            "[".repeat(MAX_JSON_DEPTH_CEILING),
            "]".repeat(MAX_JSON_DEPTH_CEILING)
        );
        assert!(PredictRequest::parse(past_ceiling.as_bytes(), &ceiling).is_err());
    }
}
