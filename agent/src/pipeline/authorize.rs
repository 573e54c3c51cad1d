//! The authorize stage: policy gates — which models, which credentials, budgets, rate limits,
//! concurrency. The policy's own gates run first (the model rules of `[models]`, then its budgets
//! and rate limits, which reserve the request's estimate until its record finishes), then the
//! plugged-in [`super::RequestStage`]s in order. A gate that refuses answers in the caller's dialect
//! and is named in the record's `decided_by`. It must not forward anything.

use http::{HeaderName, HeaderValue, StatusCode};

use super::exchange::Exchange;
use super::guard::RecordGuard;
use super::{Pipeline, Stop};
use crate::governance::{Ask, Refusal};
use crate::policy::ModelDecision;
use crate::providers::dialect::AirlockError;

impl Pipeline {
    /// Authorize: the policy's model rules, then every plugged-in gate, in order.
    pub(super) async fn authorize(
        &self,
        ex: &mut Exchange,
        guard: &mut RecordGuard,
    ) -> Result<(), Stop> {
        self.gates(ex, guard, true).await
    }

    /// Authorize for one unit on a WebSocket: the model rules, budgets and rate limits and the
    /// plugged-in gates, as for an HTTP request; credentials were the upgrade request's.
    pub(super) async fn authorize_unit(
        &self,
        ex: &mut Exchange,
        guard: &mut RecordGuard,
    ) -> Result<(), Stop> {
        self.gates(ex, guard, false).await
    }

    /// Model rules, credentials (when `credentials`), budgets and rate limits, plugged-in gates.
    async fn gates(
        &self,
        ex: &mut Exchange,
        guard: &mut RecordGuard,
        credentials: bool,
    ) -> Result<(), Stop> {
        if let Some(err) = self.refuse_model(ex) {
            return Err(Stop::Refuse {
                err,
                by: "authorize:models".into(),
            });
        }
        if credentials {
            if let Some(err) = self.apply_credentials(ex, guard) {
                return Err(Stop::Refuse {
                    err,
                    by: "authorize:credentials".into(),
                });
            }
        }
        self.admit(ex, guard).await?;
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

impl Pipeline {
    /// Budgets and rate limits: admitted (the estimate reserved until the record finishes), or
    /// refused with 429 — `budget_exceeded` with `x-should-retry: false`, `rate_limited` with
    /// `retry-after`.
    async fn admit(&self, ex: &mut Exchange, guard: &mut RecordGuard) -> Result<(), Stop> {
        let Some((gov, rules)) = self.governance() else {
            return Ok(());
        };
        if rules.is_empty() {
            return Ok(());
        }
        let caller = if rules.needs_caller() {
            ex.target.caller.clone().wait(crate::caller::WAIT).await
        } else {
            ex.target.caller.now().unwrap_or_default()
        };
        let body = ex.readable.as_deref().unwrap_or_default();
        let model = ex.identity.model.clone();
        let price = model
            .as_deref()
            .and_then(|m| self.prices.lookup(&ex.target.provider, m))
            .map(|(_, p)| (p.input, p.output));
        let ask = Ask {
            device: self.device().map(str::to_string),
            user: caller.user,
            app: caller.app,
            provider: ex.target.provider.clone(),
            model,
            input_tokens: (body.len() as u64).div_ceil(4),
            max_output_tokens: ex.identity.max_output_tokens,
            price,
        };
        match gov.admit(rules, &ask) {
            Ok(hold) => {
                for s in &hold.soft {
                    if let Ok(v) = HeaderValue::from_str(&format!("{}={}", s.name, s.remaining)) {
                        ex.response_headers
                            .push((HeaderName::from_static("x-airlock-budget-remaining"), v));
                    }
                    if s.first {
                        if let Some(j) = self.recorder().journal() {
                            j.event(
                                "budget_soft_limit",
                                guard.record().and_then(|r| r.uid),
                                serde_json::json!({"budget": s.name, "scope": s.scope, "remaining": s.remaining}),
                            );
                        }
                    }
                }
                let (tokens, usd) = hold.estimate;
                guard.note(|r| r.reserved = Some(crate::record::Reserved { tokens, usd }));
                guard.hold(hold);
                Ok(())
            }
            Err(Refusal::Budget { message }) => {
                let mut err = AirlockError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "budget_exceeded",
                    format!("Airlock refused this request: {message}"),
                );
                err.should_retry = Some(false);
                Err(Stop::Refuse {
                    err,
                    by: "authorize:budgets".into(),
                })
            }
            Err(Refusal::RateLimited {
                message,
                retry_after,
            }) => {
                let mut err = AirlockError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("Airlock refused this request: {message}"),
                );
                err.retry_after = Some(retry_after);
                Err(Stop::Refuse {
                    err,
                    by: "authorize:rate_limits".into(),
                })
            }
        }
    }
}
