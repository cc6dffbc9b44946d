//! Prometheus metrics on the REST port: [`crate::metrics`] rendered with
//! the registry's per-version gauges read at scrape time.

use std::sync::Arc;

use axum::extract::State;

use crate::metrics::{self, VersionGauges};
use crate::models::registry::{Registry, VersionState};

/// Serves the metrics at `path`.
pub fn router(path: &str, registry: Arc<Registry>) -> axum::Router {
    axum::Router::new()
        .route(
            path,
            axum::routing::get(|State(registry): State<Arc<Registry>>| async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    render(&registry),
                )
            }),
        )
        .with_state(registry)
}

fn render(registry: &Registry) -> String {
    let mut versions = Vec::new();
    for model in registry.model_names() {
        for (version, state) in registry.versions(&model) {
            let pool = match &state {
                VersionState::Available(pool) => {
                    let stats = pool.stats();
                    Some((stats.instances, stats.busy, stats.queued))
                }
                _ => None,
            };
            versions.push((model.clone(), version, state.name(), pool));
        }
    }
    metrics::render(
        versions
            .iter()
            .map(|(model, version, state, pool)| VersionGauges {
                model,
                version: *version,
                state,
                pool: *pool,
            }),
    )
}
