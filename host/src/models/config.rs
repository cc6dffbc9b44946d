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

use crate::proto::tensorflow::serving as tfs;

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

/// Reads a `ModelServerConfig` in text format. Every problem is an error
/// naming the line or the model and field, so a bad config is refused as a
/// whole.
pub fn parse(text: &str) -> anyhow::Result<Vec<ModelConfig>> {
    let config = vitrine_wire::textproto::model_server_config(text).map_err(|e| match &e.unknown_field {
        Some((field, message)) => {
            let advice = match message.as_str() {
                "ModelServerConfig" => format!(
                    "unsupported top-level field `{field}`: this server reads `model_config_list {{ config {{ ... }} }}`"
                ),
                "ModelConfigList" => {
                    format!("unknown field `{field}` in model_config_list; expected `config`")
                }
                "ModelConfig" => format!(
                    "unknown field `{field}`; a config takes name, base_path, model_platform, model_version_policy and version_labels"
                ),
                "ServableVersionPolicy" => format!(
                    "unknown version policy `{field}`; write one of `latest {{ num_versions: 1 }}`, `all {{}}` or `specific {{ versions: 1 }}`"
                ),
                other => format!("unknown field `{field}` in {other}"),
            };
            anyhow::anyhow!("line {}:{}: {advice}", e.line, e.column)
        }
        None => anyhow::anyhow!(e),
    })?;
    from_proto(config)
}

/// The models of a `ModelServerConfig`, from a config file or gRPC's
/// `HandleReloadConfigRequest`: one set of rules for both.
pub fn from_proto(config: tfs::ModelServerConfig) -> anyhow::Result<Vec<ModelConfig>> {
    use tfs::model_server_config::Config;
    let list = match config.config {
        Some(Config::ModelConfigList(list)) => list,
        Some(Config::CustomModelConfig(_)) => anyhow::bail!(
            "unsupported top-level field `custom_model_config`: this server reads `model_config_list {{ config {{ ... }} }}`"
        ),
        None => anyhow::bail!(
            "no `model_config_list`: write `model_config_list {{ config {{ name: \"...\" base_path: \"...\" }} }}`"
        ),
    };
    let mut configs: Vec<ModelConfig> = Vec::new();
    for c in list.config {
        let config = model(c)?;
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

fn model(c: tfs::ModelConfig) -> anyhow::Result<ModelConfig> {
    let name = c.name;
    if name.is_empty() {
        anyhow::bail!("a config has no `name`; every model needs one");
    }
    if name.contains(['/', ':']) {
        anyhow::bail!("model name {name:?} is not usable in a URL; use letters, digits, - and _");
    }
    if !c.model_platform.is_empty() && !PLATFORMS.contains(&c.model_platform.as_str()) {
        anyhow::bail!(
            "model {name}: model_platform {:?} is not served here; use \"tensorflow\" or \"onnx\" (Vitrine serves ONNX ViT exports either way)",
            c.model_platform
        );
    }
    for (set, field) in [
        (c.model_type != 0, "model_type"),
        (c.logging_config.is_some(), "logging_config"),
    ] {
        if set {
            tracing::warn!("model {name}: ignoring `{field}`, which vitrine does not implement");
        }
    }
    let policy = match c.model_version_policy {
        None => VersionPolicy::default(),
        Some(p) => version_policy(p, &name)?,
    };
    let mut labels = BTreeMap::new();
    for (key, version) in c.version_labels {
        match u64::try_from(version) {
            Ok(v) if !key.is_empty() && v > 0 => {
                labels.insert(key, v);
            }
            _ => anyhow::bail!(
                "model {name}: write version labels as `version_labels {{ key: \"stable\" value: 1 }}` (a name and a positive version)"
            ),
        }
    }
    if c.base_path.is_empty() {
        anyhow::bail!("model {name} has no `base_path`: the folder holding its <version>/ folders");
    }
    Ok(ModelConfig {
        name,
        base_path: PathBuf::from(c.base_path),
        policy,
        labels,
    })
}

fn version_policy(
    p: tfs::file_system_storage_path_source_config::ServableVersionPolicy,
    model: &str,
) -> anyhow::Result<VersionPolicy> {
    use tfs::file_system_storage_path_source_config::servable_version_policy::PolicyChoice;
    let usage = "write one of `latest { num_versions: 1 }`, `all {}` or `specific { versions: 1 }`";
    match p.policy_choice {
        None => {
            anyhow::bail!("model {model}: model_version_policy needs exactly one policy; {usage}")
        }
        Some(PolicyChoice::Latest(l)) => match l.num_versions {
            None => Ok(VersionPolicy::Latest(1)),
            Some(0) => anyhow::bail!("model {model}: num_versions must be a positive integer"),
            Some(n) => Ok(VersionPolicy::Latest(n as usize)),
        },
        Some(PolicyChoice::All(_)) => Ok(VersionPolicy::All),
        Some(PolicyChoice::Specific(s)) => {
            let mut versions = BTreeSet::new();
            for v in s.versions {
                let n = u64::try_from(v).ok().filter(|n| *n > 0).ok_or_else(|| {
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
