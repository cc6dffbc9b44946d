//! Which models to serve: TF Serving's `--model_config_file` (a
//! `ModelServerConfig` in protobuf text format), or the one model named by
//! `--model_name` and `--model_base_path`.
//!
//! Both become the same `Vec<ModelConfig>`, so the lifecycle manager, the
//! readiness probe and the reload endpoint never care where a config came
//! from.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::textproto::{self, Message, Value};

/// Which versions of a model to serve, as TF Serving's
/// `model_version_policy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPolicy {
    /// The `n` highest version numbers (TF Serving's default, with `n` = 1).
    Latest(usize),
    /// Every version found.
    All,
    /// Exactly these versions, when present.
    Specific(BTreeSet<u64>),
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

impl fmt::Display for VersionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionPolicy::Latest(n) => write!(f, "latest {{ num_versions: {n} }}"),
            VersionPolicy::All => f.write_str("all {}"),
            VersionPolicy::Specific(v) => {
                let list: Vec<String> = v.iter().map(u64::to_string).collect();
                write!(f, "specific {{ versions: [{}] }}", list.join(", "))
            }
        }
    }
}

impl VersionPolicy {
    /// The versions to serve out of `candidates` (complete, not failed),
    /// newest first.
    pub fn select(&self, candidates: &BTreeSet<u64>) -> Vec<u64> {
        match self {
            VersionPolicy::Latest(n) => candidates.iter().rev().take(*n).copied().collect(),
            VersionPolicy::All => candidates.iter().rev().copied().collect(),
            VersionPolicy::Specific(wanted) => candidates
                .iter()
                .rev()
                .filter(|v| wanted.contains(v))
                .copied()
                .collect(),
        }
    }
}

/// One model to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    pub name: String,
    /// Holds the `<version>/` folders.
    pub base_path: PathBuf,
    pub policy: VersionPolicy,
    /// `version_labels`: label → version.
    pub labels: BTreeMap<String, u64>,
}

impl ModelConfig {
    /// The single model of `--model_name` and `--model_base_path`.
    pub fn single(name: &str, base_path: &Path) -> ModelConfig {
        ModelConfig {
            name: name.to_string(),
            base_path: base_path.to_path_buf(),
            policy: VersionPolicy::default(),
            labels: BTreeMap::new(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "base_path": self.base_path,
            "model_version_policy": self.policy.to_string(),
            "version_labels": self.labels,
        })
    }
}

/// Platforms a config may name: TF Serving's only value, so existing
/// config files work unchanged, and the format Vitrine actually serves.
const PLATFORMS: [&str; 2] = ["tensorflow", "onnx"];

/// `config` fields TF Serving knows that change nothing here.
const IGNORED_FIELDS: [&str; 2] = ["logging_config", "model_type"];

/// Reads a `ModelServerConfig` in text format. Every problem is an error
/// naming the model and field, so a bad config is refused as a whole.
pub fn parse(text: &str) -> anyhow::Result<Vec<ModelConfig>> {
    let root = textproto::parse(text).map_err(|e| anyhow::anyhow!("line {e}"))?;
    for (name, _) in &root.fields {
        if name != "model_config_list" {
            anyhow::bail!(
                "unsupported top-level field `{name}`: this server reads `model_config_list {{ config {{ ... }} }}`"
            );
        }
    }
    let Some(list) = root.get("model_config_list") else {
        anyhow::bail!(
            "no `model_config_list`: write `model_config_list {{ config {{ name: \"...\" base_path: \"...\" }} }}`"
        );
    };
    let list = message(list, "model_config_list")?;
    let mut configs: Vec<ModelConfig> = Vec::new();
    for (field, value) in &list.fields {
        if field != "config" {
            anyhow::bail!("unknown field `{field}` in model_config_list; expected `config`");
        }
        let config = model(message(value, "config")?)?;
        if configs.iter().any(|c| c.name == config.name) {
            anyhow::bail!(
                "model {} is configured twice; give every config a distinct name",
                config.name
            );
        }
        configs.push(config);
    }
    Ok(configs)
}

fn message<'a>(value: &'a Value, field: &str) -> anyhow::Result<&'a Message> {
    value
        .as_message()
        .ok_or_else(|| anyhow::anyhow!("`{field}` must be a message: `{field} {{ ... }}`"))
}

fn scalar<'a>(value: &'a Value, field: &str, model: &str) -> anyhow::Result<&'a str> {
    value.as_str().ok_or_else(|| {
        anyhow::anyhow!("model {model}: `{field}` must be a value, as in `{field}: ...`")
    })
}

fn model(m: &Message) -> anyhow::Result<ModelConfig> {
    let name = match m.get("name") {
        Some(v) => scalar(v, "name", "?")?.to_string(),
        None => anyhow::bail!("a config has no `name`; every model needs one"),
    };
    if name.is_empty() || name.contains(['/', ':']) {
        anyhow::bail!("model name {name:?} is not usable in a URL; use letters, digits, - and _");
    }
    let mut base_path = None;
    let mut policy = VersionPolicy::default();
    let mut labels = BTreeMap::new();
    for (field, value) in &m.fields {
        match field.as_str() {
            "name" => {}
            "base_path" => base_path = Some(PathBuf::from(scalar(value, field, &name)?)),
            "model_platform" => {
                let p = scalar(value, field, &name)?;
                if !PLATFORMS.contains(&p) {
                    anyhow::bail!(
                        "model {name}: model_platform {p:?} is not served here; use \"tensorflow\" or \"onnx\" (Vitrine serves ONNX ViT exports either way)"
                    );
                }
            }
            "model_version_policy" => policy = version_policy(message(value, field)?, &name)?,
            "version_labels" => {
                let entry = message(value, field)?;
                let key = entry.get("key").and_then(Value::as_str);
                let version = entry.get("value").and_then(Value::as_u64);
                match (key, version) {
                    (Some(k), Some(v)) if !k.is_empty() && v > 0 => {
                        labels.insert(k.to_string(), v);
                    }
                    _ => anyhow::bail!(
                        "model {name}: write version labels as `version_labels {{ key: \"stable\" value: 1 }}` (a name and a positive version)"
                    ),
                }
            }
            f if IGNORED_FIELDS.contains(&f) => {
                tracing::warn!("model {name}: ignoring `{f}`, which vitrine does not implement");
            }
            other => anyhow::bail!(
                "model {name}: unknown field `{other}`; a config takes name, base_path, model_platform, model_version_policy and version_labels"
            ),
        }
    }
    let Some(base_path) = base_path.filter(|p| !p.as_os_str().is_empty()) else {
        anyhow::bail!("model {name} has no `base_path`: the folder holding its <version>/ folders");
    };
    Ok(ModelConfig {
        name,
        base_path,
        policy,
        labels,
    })
}

fn version_policy(m: &Message, model: &str) -> anyhow::Result<VersionPolicy> {
    let usage = "write one of `latest { num_versions: 1 }`, `all {}` or `specific { versions: 1 }`";
    let [(kind, value)] = m.fields.as_slice() else {
        anyhow::bail!("model {model}: model_version_policy needs exactly one policy; {usage}");
    };
    let body = message(value, kind)?;
    match kind.as_str() {
        "latest" => {
            let n = match body.get("num_versions") {
                None => 1,
                Some(v) => v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                    anyhow::anyhow!("model {model}: num_versions must be a positive integer")
                })?,
            };
            Ok(VersionPolicy::Latest(n as usize))
        }
        "all" => Ok(VersionPolicy::All),
        "specific" => {
            let mut versions = BTreeSet::new();
            for v in body.get_all("versions") {
                let n = v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                    anyhow::anyhow!("model {model}: specific versions must be positive integers")
                })?;
                versions.insert(n);
            }
            if versions.is_empty() {
                anyhow::bail!(
                    "model {model}: `specific` lists no versions; write `specific {{ versions: 1 versions: 2 }}`"
                );
            }
            Ok(VersionPolicy::Specific(versions))
        }
        other => anyhow::bail!("model {model}: unknown version policy `{other}`; {usage}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tf_serving_configs() {
        let configs = parse(
            r#"
            model_config_list {
              config {
                name: "hf-vit"
                base_path: "/models/hf-vit"
                model_platform: "tensorflow"
                model_version_policy { specific { versions: [1, 2] } }
                version_labels { key: "stable" value: 1 }
                version_labels { key: "canary" value: 2 }
              }
              config { name: "b" base_path: "/models/b" model_version_policy { all {} } }
              config { name: "c" base_path: "/models/c" model_version_policy { latest { num_versions: 3 } } }
              config { name: "d" base_path: "/models/d" }
            }"#,
        )
        .expect("valid");
        let policies: Vec<_> = configs.iter().map(|c| c.policy.clone()).collect();
        assert_eq!(
            policies,
            vec![
                VersionPolicy::Specific([1, 2].into()),
                VersionPolicy::All,
                VersionPolicy::Latest(3),
                VersionPolicy::Latest(1),
            ]
        );
        assert_eq!(
            configs[0].labels,
            [("stable".to_string(), 1), ("canary".to_string(), 2)].into()
        );
        assert_eq!(configs[3].base_path, PathBuf::from("/models/d"));
    }

    #[test]
    fn refuses_bad_configs_with_a_reason() {
        let cases = [
            (
                "model_config_list { config { name: 'a' base_path: '/x' ",
                "line 1:",
            ),
            ("custom_model_config {}", "unsupported top-level field"),
            ("", "no `model_config_list`"),
            (
                "model_config_list { config { base_path: '/x' } }",
                "no `name`",
            ),
            (
                "model_config_list { config { name: 'a' } }",
                "no `base_path`",
            ),
            (
                "model_config_list { config { name: 'a' base_path: '/x' } config { name: 'a' base_path: '/y' } }",
                "configured twice",
            ),
            (
                "model_config_list { config { name: 'a' base_path: '/x' model_platform: 'pytorch' } }",
                "not served here",
            ),
            (
                "model_config_list { config { name: 'a' base_path: '/x' base_pth: '/y' } }",
                "unknown field `base_pth`",
            ),
            (
                "model_config_list { config { name: 'a' base_path: '/x' model_version_policy { newest {} } } }",
                "unknown version policy",
            ),
            (
                "model_config_list { config { name: 'a' base_path: '/x' model_version_policy { latest { num_versions: 0 } } } }",
                "positive",
            ),
            (
                "model_config_list { config { name: 'a' base_path: '/x' model_version_policy { specific {} } } }",
                "lists no versions",
            ),
            (
                "model_config_list { config { name: 'a' base_path: '/x' version_labels { key: 'stable' } } }",
                "version_labels",
            ),
            (
                "model_config_list { config { name: 'a/b' base_path: '/x' } }",
                "not usable in a URL",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn policies_select_newest_first() {
        let found: BTreeSet<u64> = [1, 2, 3, 5].into();
        assert_eq!(VersionPolicy::Latest(1).select(&found), vec![5]);
        assert_eq!(VersionPolicy::Latest(2).select(&found), vec![5, 3]);
        assert_eq!(VersionPolicy::All.select(&found), vec![5, 3, 2, 1]);
        assert_eq!(
            VersionPolicy::Specific([2, 4, 5].into()).select(&found),
            vec![5, 2]
        );
        assert_eq!(
            VersionPolicy::Specific([1, 2].into()).to_string(),
            "specific { versions: [1, 2] }"
        );
    }
}
