//! `tensorflow.serving.ModelService`: GetModelStatus, and the reload call
//! that answers UNIMPLEMENTED.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::models::config::ModelConfig;
use crate::models::lifecycle::{ConfigSource, Lifecycle};
use crate::models::registry::Registry;
use crate::routing::{self};

use super::convert::*;
use crate::proto::tensorflow::serving::model_service_server::ModelService;
use crate::proto::tensorflow::serving::{
    self as tfs, GetModelStatusRequest, GetModelStatusResponse, ReloadConfigRequest,
    ReloadConfigResponse,
};

/// `ModelService` over the registry and the lifecycle.
pub(super) struct Models {
    pub(super) registry: Arc<Registry>,
    pub(super) lifecycle: Arc<Lifecycle>,
}

#[tonic::async_trait]
impl ModelService for Models {
    async fn get_model_status(
        &self,
        request: Request<GetModelStatusRequest>,
    ) -> Result<Response<GetModelStatusResponse>, Status> {
        let req = request.into_inner();
        let (model, selector) = target(req.model_spec.as_ref())?;
        let statuses = routing::status(&self.registry, &model, &selector).map_err(|f| f.grpc())?;
        use tfs::model_version_status::State;
        let model_version_status = statuses
            .into_iter()
            .map(|s| tfs::ModelVersionStatus {
                version: s.version as i64,
                state: State::from_str_name(s.state).unwrap_or(State::Unknown) as i32,
                status: Some(tfs::StatusProto {
                    error_code: if s.error.is_some() {
                        crate::proto::tensorflow::error::Code::Unknown as i32
                    } else {
                        crate::proto::tensorflow::error::Code::Ok as i32
                    },
                    error_message: s.error.unwrap_or_default(),
                }),
            })
            .collect();
        Ok(Response::new(GetModelStatusResponse {
            model_version_status,
        }))
    }

    async fn handle_reload_config_request(
        &self,
        request: Request<ReloadConfigRequest>,
    ) -> Result<Response<ReloadConfigResponse>, Status> {
        let configs = model_configs(request.into_inner().config)?;
        let status = match self.lifecycle.reload(ConfigSource::Parsed(configs)).await {
            Ok(()) => tfs::StatusProto {
                error_code: crate::proto::tensorflow::error::Code::Ok as i32,
                error_message: String::new(),
            },
            Err(e) => tfs::StatusProto {
                error_code: crate::proto::tensorflow::error::Code::from_str_name(e.code())
                    .unwrap_or(crate::proto::tensorflow::error::Code::Unknown)
                    as i32,
                error_message: e.to_string(),
            },
        };
        Ok(Response::new(ReloadConfigResponse {
            status: Some(status),
        }))
    }
}

/// The models of a reload request, by the config file's rules.
fn model_configs(config: Option<tfs::ModelServerConfig>) -> Result<Vec<ModelConfig>, Status> {
    crate::models::config::from_proto(config.unwrap_or_default())
        .map_err(|e| Status::invalid_argument(format!("{e:#}")))
}
