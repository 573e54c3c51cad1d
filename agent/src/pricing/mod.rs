//! Prices and cost (interface stub; implemented by the pricing work).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::Usage;
use crate::Result;

/// Prices of one model, USD per million tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Uncached input.
    pub input: f64,
    /// Output.
    pub output: f64,
}

/// What a request cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Cost {
    /// Priced.
    Priced {
        /// USD.
        usd: f64,
        /// The price-table key used.
        model_key: String,
    },
    /// Not priced, and why.
    Unknown {
        /// Why.
        reason: String,
    },
}

/// The price table.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    models: BTreeMap<String, ModelPrice>,
}

impl PriceTable {
    /// The table shipped with the agent.
    pub fn embedded() -> Result<PriceTable> {
        Ok(PriceTable::default())
    }

    /// Applies policy overrides (keys `provider/model`).
    pub fn with_overrides(mut self, overrides: &BTreeMap<String, ModelPrice>) -> PriceTable {
        self.models.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        self
    }

    /// The cost of `usage` on `provider`'s `model`.
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Cost {
        let _ = (provider, usage);
        Cost::Unknown {
            reason: format!("no price for {model}"),
        }
    }
}
