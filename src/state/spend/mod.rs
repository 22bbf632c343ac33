//! What brokered model calls cost. The credential broker (outside the box)
//! appends a [`Record`] per call to its instance's ledger
//! (`meter/<id>/usage.jsonl`); `spend`, `list`, the API and the broker's
//! own budget checks sum them with the price table.

pub mod ledger;
pub mod prices;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Tokens of one call, or of many, as the Messages API names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tokens {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl Tokens {
    pub fn add(&mut self, o: &Tokens) {
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cache_creation_input_tokens += o.cache_creation_input_tokens;
        self.cache_read_input_tokens += o.cache_read_input_tokens;
    }

    pub fn total(&self) -> u64 {
        self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
    }
}

/// One brokered call, as its response reported it upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub ts: DateTime<Utc>,
    /// The model the response named (`""` when it named none).
    #[serde(default)]
    pub model: String,
    #[serde(flatten)]
    pub tokens: Tokens,
    /// The upstream's HTTP status.
    #[serde(default)]
    pub status: u16,
}

/// A sum of records: what `spend` shows per instance and in total.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Spend {
    pub requests: u64,
    #[serde(flatten)]
    pub tokens: Tokens,
    /// The cost of the calls whose model has a price.
    pub cost_usd: f64,
    /// Models of counted calls without a price: their tokens are counted,
    /// their cost is not in `cost_usd`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unpriced_models: Vec<String>,
}

impl Spend {
    pub fn add(&mut self, rec: &Record, prices: &prices::Prices) {
        self.requests += 1;
        self.tokens.add(&rec.tokens);
        match prices.cost(&rec.model, &rec.tokens) {
            Some(c) => self.cost_usd += c,
            None => {
                if rec.tokens.total() > 0 && !self.unpriced_models.contains(&rec.model) {
                    self.unpriced_models.push(rec.model.clone());
                }
            }
        }
    }

    pub fn merge(&mut self, o: &Spend) {
        self.requests += o.requests;
        self.tokens.add(&o.tokens);
        self.cost_usd += o.cost_usd;
        for m in &o.unpriced_models {
            if !self.unpriced_models.contains(m) {
                self.unpriced_models.push(m.clone());
            }
        }
    }

    /// The sum of `records` at or after `since`.
    pub fn of<'a>(
        records: impl IntoIterator<Item = &'a Record>,
        since: Option<DateTime<Utc>>,
        prices: &prices::Prices,
    ) -> Spend {
        let mut s = Spend::default();
        for r in records {
            if since.is_none_or(|t| r.ts >= t) {
                s.add(r, prices);
            }
        }
        s
    }

    /// `$1.23`, with `+?` when some calls have no price.
    pub fn cost_text(&self) -> String {
        let unknown = if self.unpriced_models.is_empty() {
            ""
        } else {
            "+?"
        };
        format!("${:.2}{unknown}", self.cost_usd)
    }
}

/// The start of today (UTC): the daily budget's day.
pub fn start_of_day(now: DateTime<Utc>) -> DateTime<Utc> {
    now.date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc())
        .unwrap_or(now)
}
