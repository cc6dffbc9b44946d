//! One servable instance: its configuration and the model, loaded on first
//! use or brought along pre-initialized.

use std::sync::OnceLock;

use crate::api::{ApiError, VersionSelector};

use super::model::{LoadedModel, ServiceConfig};

/// Answers TF Serving REST requests for one model version.
pub struct Service {
    pub(super) config: ServiceConfig,
    model: OnceLock<Result<LoadedModel, String>>,
    /// The model came loaded in the component's memory (`vitrine preinit`).
    pub(super) preinitialized: bool,
}

impl Service {
    pub fn new(config: ServiceConfig) -> Service {
        Service {
            config,
            model: OnceLock::new(),
            preinitialized: false,
        }
    }

    /// A service for `model`, already loaded as `model_name` at `version`:
    /// the pre-initialized component's. `config`'s limits still apply, but
    /// its model name, version and folder give way to the loaded model's.
    pub fn with_model(
        mut config: ServiceConfig,
        model_name: String,
        version: u64,
        model: LoadedModel,
    ) -> Service {
        config.model_name = model_name;
        config.version = version;
        Service {
            config,
            model: OnceLock::from(Ok(model)),
            preinitialized: true,
        }
    }

    /// The model, loaded on first use and kept for the instance's lifetime.
    pub fn model(&self) -> Result<&LoadedModel, ApiError> {
        self.model
            .get_or_init(|| LoadedModel::load(&self.config.model_dir).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| {
                ApiError::unavailable(format!(
                    "model {} version {} failed to load: {e}",
                    self.config.model_name, self.config.version
                ))
            })
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Whether `model` at `version` names this instance's servable.
    pub fn serves(&self, model: &str, version: &VersionSelector) -> bool {
        model == self.config.model_name
            && match version {
                VersionSelector::Latest => true,
                VersionSelector::Number(v) => *v == self.config.version,
                VersionSelector::Label(_) => false,
            }
    }
}
