//! Protobuf's text format, the format of TF Serving's config files, read by
//! prost-reflect against the descriptors `build.rs` compiles from
//! `wire/proto`: a file is read exactly as its schema says, into the same
//! prost types the gRPC API uses. [`model_server_config`],
//! [`batching_parameters`] and [`monitoring_config`] are the three files the
//! server reads; what their fields mean is the host's business.

use std::fmt;
use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage};

use crate::proto::FILE_DESCRIPTOR_SET;
use crate::proto::tensorflow::serving as tfs;
use crate::proto::vitrine::config::BareBatchingParameters;

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("build.rs writes a valid descriptor set")
});

/// Where and why a text-format file stops making sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFormatError {
    /// From 1.
    pub line: usize,
    /// From 1, in characters.
    pub column: usize,
    pub message: String,
    /// Set when a field name is not in the schema: `(field, message)`, the
    /// message's unqualified name. Callers turn it into advice.
    pub unknown_field: Option<(String, String)>,
    /// Bytes into the text; how far the parser got.
    pub offset: usize,
}

impl fmt::Display for TextFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for TextFormatError {}

/// Parses `text` as the message `full_name` (e.g.
/// `tensorflow.serving.ModelServerConfig`) into its prost type `M`.
pub fn parse<M: prost::Message + Default>(
    full_name: &str,
    text: &str,
) -> Result<M, TextFormatError> {
    let Some(desc) = POOL.get_message_by_name(full_name) else {
        unreachable!("{full_name} is not compiled from wire/proto");
    };
    let message = DynamicMessage::parse_text_format(desc, text).map_err(|e| located(&e, text))?;
    message.transcode_to::<M>().map_err(|e| TextFormatError {
        line: 1,
        column: 1,
        message: format!("cannot convert to {full_name}: {e}"),
        unknown_field: None,
        offset: 0,
    })
}

/// `--model_config_file`.
pub fn model_server_config(text: &str) -> Result<tfs::ModelServerConfig, TextFormatError> {
    parse("tensorflow.serving.ModelServerConfig", text)
}

/// `--monitoring_config_file`.
pub fn monitoring_config(text: &str) -> Result<tfs::MonitoringConfig, TextFormatError> {
    parse("tensorflow.serving.MonitoringConfig", text)
}

/// `--batching_parameters_file`: TF Serving's `BatchingParameters`, fields
/// wrapped as TF Serving writes them (`max_batch_size { value: 32 }`) or,
/// one form throughout a file, bare (`max_batch_size: 32`). Either comes
/// back in the bare form; a file in neither gets the error of the form that
/// read further, which is the one the file is in.
pub fn batching_parameters(text: &str) -> Result<BareBatchingParameters, TextFormatError> {
    match parse::<tfs::BatchingParameters>("tensorflow.serving.BatchingParameters", text) {
        Ok(w) => Ok(BareBatchingParameters {
            max_batch_size: w.max_batch_size,
            batch_timeout_micros: w.batch_timeout_micros,
            max_enqueued_batches: w.max_enqueued_batches,
            num_batch_threads: w.num_batch_threads,
            allowed_batch_sizes: w.allowed_batch_sizes,
            ..Default::default()
        }),
        Err(wrapped) => {
            parse::<BareBatchingParameters>("vitrine.config.BareBatchingParameters", text).map_err(
                |bare| {
                    if bare.offset > wrapped.offset {
                        bare
                    } else {
                        wrapped
                    }
                },
            )
        }
    }
}

fn located(e: &prost_reflect::text_format::ParseError, text: &str) -> TextFormatError {
    use miette::Diagnostic;
    // The error's span is only exposed through its miette labels; an error
    // without one (the text ended early) points at the end of the text.
    let offset = e
        .labels()
        .and_then(|mut labels| labels.next())
        .map_or(text.len(), |l| l.offset())
        .min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let message = e.to_string();
    TextFormatError {
        line,
        column,
        unknown_field: unknown_field(&message),
        message,
        offset,
    }
}

/// prost-reflect keeps its error kinds private; its message for an unknown
/// field is `field 'x' not found for message 'pkg.Message'`.
fn unknown_field(message: &str) -> Option<(String, String)> {
    let rest = message.strip_prefix("field '")?;
    let (field, rest) = rest.split_once("' not found for message '")?;
    let full = rest.strip_suffix('\'')?;
    let short = full.rsplit('.').next().unwrap_or(full);
    Some((field.to_string(), short.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::tensorflow::serving::MonitoringConfig;

    const MONITORING: &str = "tensorflow.serving.MonitoringConfig";

    #[test]
    fn errors_name_the_line_column_and_field() {
        let e = parse::<MonitoringConfig>(
            MONITORING,
            "# a comment\nprometheus_config {\n  enable: true\n  port: 9\n}\n",
        )
        .expect_err("port is not a field");
        assert_eq!((e.line, e.column), (4, 3), "{e}");
        assert_eq!(
            e.unknown_field,
            Some(("port".to_string(), "PrometheusConfig".to_string()))
        );
        assert!(e.to_string().starts_with("line 4:3: "), "{e}");

        let e = parse::<MonitoringConfig>(MONITORING, "prometheus_config {\n  enable: true")
            .expect_err("unterminated");
        assert_eq!(e.line, 2, "{e}");
        assert_eq!(e.unknown_field, None);
    }

    #[test]
    fn reads_every_syntax_of_the_text_format() {
        for text in [
            "prometheus_config { enable: true path: \"/m\" }",
            "prometheus_config: { enable: true, path: '/m' }",
            "prometheus_config < enable: true; path: \"/\" \"m\" >",
            "# comment\nprometheus_config {\n enable: t # trailing\n path: '\\x2fm'\n}",
        ] {
            let config = parse::<MonitoringConfig>(MONITORING, text).expect(text);
            let prometheus = config.prometheus_config.expect(text);
            assert!(prometheus.enable, "{text}");
            assert_eq!(prometheus.path, "/m", "{text}");
        }
    }

    #[test]
    fn batching_parameters_read_both_forms_and_blame_the_one_used() {
        let wrapped = batching_parameters("max_batch_size { value: 8 } allowed_batch_sizes: 8")
            .expect("wrapped");
        let bare = batching_parameters("max_batch_size: 8 allowed_batch_sizes: [8]").expect("bare");
        assert_eq!(wrapped, bare);
        assert_eq!(bare.max_batch_size, Some(8));
        // Bare form up to line 2: the bare parser read further, so its error wins.
        let e = batching_parameters("max_batch_size: 8\nbatch_timeout: 1").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert_eq!(
            e.unknown_field.map(|f| f.0).as_deref(),
            Some("batch_timeout")
        );
    }

    #[test]
    fn seeds_are_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/text_configs");
        let read = |name: &str| std::fs::read_to_string(format!("{dir}/{name}")).expect(name);
        let models = model_server_config(&read("models.config")).expect("models.config");
        assert!(models.config.is_some());
        batching_parameters(&read("batching_parameters.txt")).expect("wrapped");
        batching_parameters(&read("batching_bare.txt")).expect("bare");
        monitoring_config(&read("monitoring.config")).expect("monitoring");
    }
}
