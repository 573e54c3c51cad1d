//! The settle stage's first filler: cost. Once a response has ended, its usage (exact or estimated) is
//! priced from the price table — the shipped one with the policy's overrides — by the model that actually
//! answered when the response named one (Azure deployments are mapped to their models by policy). A model
//! without a price is recorded as cost unknown with the reason; it is never counted as free.

use std::collections::BTreeMap;

use super::ResponseStage;
use crate::pricing::{Cost, PriceTable};
use crate::record::{CostStatus, Record};

/// Prices finished requests.
#[derive(Debug, Clone)]
pub struct CostStage {
    prices: PriceTable,
    deployments: BTreeMap<String, String>,
}

impl CostStage {
    /// A stage pricing with `prices`, mapping Azure deployments through `deployments`.
    pub fn new(prices: PriceTable, deployments: BTreeMap<String, String>) -> Self {
        CostStage {
            prices,
            deployments,
        }
    }

    /// The model name to price a record by.
    fn model_of<'a>(&'a self, r: &'a Record) -> Option<&'a str> {
        if r.provider == "azure" {
            if let Some(m) = r.model.as_deref().and_then(|d| self.deployments.get(d)) {
                return Some(m.as_str());
            }
        }
        r.response_model.as_deref().or(r.model.as_deref())
    }
}

impl ResponseStage for CostStage {
    fn name(&self) -> &'static str {
        "cost"
    }

    fn apply(&self, r: &mut Record) {
        let Some(usage) = r.usage else {
            return;
        };
        let Some(model) = self.model_of(r).map(str::to_string) else {
            r.cost_status = Some(CostStatus::Unknown);
            r.cost_note = Some("the request and response named no model to price".into());
            return;
        };
        match self.prices.cost(&r.provider, &model, &usage) {
            Cost::Priced { usd, model_key } => {
                r.cost_usd = Some(usd);
                r.cost_status = Some(if r.usage_estimated {
                    CostStatus::Estimated
                } else {
                    CostStatus::Priced
                });
                r.cost_note = Some(model_key);
            }
            Cost::Unknown { reason } => {
                r.cost_status = Some(CostStatus::Unknown);
                r.cost_note = Some(reason);
            }
        }
    }
}
