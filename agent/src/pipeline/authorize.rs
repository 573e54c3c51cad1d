//! The authorize stage: policy gates — which models, which credentials, budgets, rate limits,
//! concurrency. The policy's own gates run first (the model rules of `[models]`), then the
//! plugged-in [`super::RequestStage`]s in order. A gate that refuses answers in the caller's dialect
//! and is named in the record's `decided_by`. It must not forward anything.

use http::StatusCode;

use super::exchange::Exchange;
use super::guard::RecordGuard;
use super::{Pipeline, Stop};
use crate::policy::ModelDecision;
use crate::providers::dialect::AirlockError;

impl Pipeline {
    /// Authorize: the policy's model rules, then every plugged-in gate, in order.
    pub(super) async fn authorize(
        &self,
        ex: &mut Exchange,
        guard: &mut RecordGuard,
    ) -> Result<(), Stop> {
        if let Some(err) = self.refuse_model(ex) {
            return Err(Stop::Refuse {
                err,
                by: "authorize:models".into(),
            });
        }
        self.run_slot(&self.stages.authorize, "authorize", ex, guard)
            .await
    }

    /// `[models]`: a model the policy does not allow is refused with 403 `model_blocked`, naming
    /// the model and the rule; the provider never sees the request.
    fn refuse_model(&self, ex: &Exchange) -> Option<AirlockError> {
        if self.models.is_empty() {
            return None;
        }
        let model = ex.identity.model.as_deref()?;
        // An Azure deployment is judged by its name and by the model policy says it serves.
        let served = self.deployments.get(model).map(String::as_str);
        let denied = std::iter::once(model).chain(served).find_map(|m| {
            match self.models.decide(&ex.target.provider, m) {
                ModelDecision::Deny(because) => Some((m, because)),
                ModelDecision::Allow(_) => None,
            }
        });
        match denied {
            None => None,
            Some((m, because)) => {
                let model = if m == model {
                    format!("{model:?}")
                } else {
                    format!("{m:?} (deployment {model:?})")
                };
                let mut err = AirlockError::new(
                    StatusCode::FORBIDDEN,
                    "model_blocked",
                    format!(
                        "Airlock policy does not allow model {model} with {} (rule {} = {:?}); use a model \
                         the policy allows, or ask your administrator",
                        ex.target.provider, because.key, because.rule
                    ),
                );
                err.should_retry = Some(false);
                Some(err)
            }
        }
    }
}
