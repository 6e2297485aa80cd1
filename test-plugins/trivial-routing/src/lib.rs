//! Keeps the healthy candidates in the order given.
use tollgate_plugin_sdk::{
    export_plugin, Attempt, Candidate, Principal, Reject, RequestSummary, Routing,
};

pub struct TrivialRouting;

impl Routing for TrivialRouting {
    fn route(
        _who: Principal,
        summary: RequestSummary,
        candidates: Vec<Candidate>,
    ) -> Result<Vec<Attempt>, Reject> {
        let attempts: Vec<Attempt> = candidates
            .into_iter()
            .filter(|c| c.healthy)
            .map(|c| Attempt {
                provider: c.provider,
                upstream_model: c.upstream_model,
                timeout_ms: 0,
            })
            .collect();
        if attempts.is_empty() {
            return Err(Reject::model_not_found(format!(
                "no healthy provider for {}",
                summary.model
            )));
        }
        Ok(attempts)
    }
}

export_plugin!(routing: TrivialRouting);
