//! US dollars per million tokens, per model: a shipped table that
//! `[prices."<model>"]` overrides or extends. A model id is priced by the
//! longest entry it starts with, so dated ids (`claude-sonnet-4-5-20250929`)
//! find their family.

use super::Tokens;
use crate::state::config::Price;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices {
    table: BTreeMap<String, Price>,
}

/// (model prefix, input, output, cache read) in dollars per million
/// tokens; a cache write costs 1.25 × input unless a row says otherwise.
const SHIPPED: &[(&str, f64, f64, f64)] = &[
    ("claude-opus-4-5", 5.0, 25.0, 0.50),
    ("claude-opus-4-1", 15.0, 75.0, 1.50),
    ("claude-opus-4", 15.0, 75.0, 1.50),
    ("claude-sonnet-4-5", 3.0, 15.0, 0.30),
    ("claude-sonnet-4", 3.0, 15.0, 0.30),
    ("claude-3-7-sonnet", 3.0, 15.0, 0.30),
    ("claude-3-5-sonnet", 3.0, 15.0, 0.30),
    ("claude-haiku-4-5", 1.0, 5.0, 0.10),
    ("claude-3-5-haiku", 0.80, 4.0, 0.08),
    ("claude-3-haiku", 0.25, 1.25, 0.03),
    ("gemini-3-pro", 2.0, 12.0, 0.20),
    ("gemini-2.5-pro", 1.25, 10.0, 0.125),
    ("gemini-2.5-flash-lite", 0.10, 0.40, 0.01),
    ("gemini-2.5-flash", 0.30, 2.50, 0.03),
    ("gemini-2.0-flash", 0.10, 0.40, 0.025),
    ("gpt-5-nano", 0.05, 0.40, 0.005),
    ("gpt-5-mini", 0.25, 2.0, 0.025),
    ("gpt-5", 1.25, 10.0, 0.125),
    ("gpt-4.1", 2.0, 8.0, 0.50),
    ("gpt-4o", 2.50, 10.0, 1.25),
    // A family's newer models than the rows above: priced as its newest
    // known one until the table (or `[prices]`) knows them.
    ("claude-opus", 5.0, 25.0, 0.50),
    ("claude-sonnet", 3.0, 15.0, 0.30),
    ("claude-haiku", 1.0, 5.0, 0.10),
    ("gemini", 2.0, 12.0, 0.20),
];

impl Prices {
    /// The shipped table with `overrides` (config) over it.
    pub fn new(overrides: &BTreeMap<String, Price>) -> Prices {
        let mut table: BTreeMap<String, Price> = SHIPPED
            .iter()
            .map(|&(m, i, o, r)| {
                let p = Price {
                    input_per_mtok: i,
                    output_per_mtok: o,
                    cache_write_per_mtok: None,
                    cache_read_per_mtok: Some(r),
                };
                (m.to_owned(), p)
            })
            .collect();
        table.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        Prices { table }
    }

    /// The entry pricing `model`: exact, else the longest prefix.
    pub fn price_of(&self, model: &str) -> Option<&Price> {
        if model.is_empty() {
            return None;
        }
        self.table
            .iter()
            .filter(|(k, _)| model.starts_with(k.as_str()))
            .max_by_key(|(k, _)| k.len())
            .map(|(_, p)| p)
    }

    /// What `tokens` of `model` cost; `None` for a model without a price.
    pub fn cost(&self, model: &str, tokens: &Tokens) -> Option<f64> {
        let p = self.price_of(model)?;
        let write = p.cache_write_per_mtok.unwrap_or(p.input_per_mtok * 1.25);
        let read = p.cache_read_per_mtok.unwrap_or(p.input_per_mtok * 0.1);
        let m = |n: u64, per: f64| n as f64 * per / 1_000_000.0;
        Some(
            m(tokens.input_tokens, p.input_per_mtok)
                + m(tokens.output_tokens, p.output_per_mtok)
                + m(tokens.cache_creation_input_tokens, write)
                + m(tokens.cache_read_input_tokens, read),
        )
    }

    /// The whole table, for the broker's settings file.
    pub fn table(&self) -> &BTreeMap<String, Price> {
        &self.table
    }

    pub fn from_table(table: BTreeMap<String, Price>) -> Prices {
        Prices { table }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dated_models_find_their_family_and_config_overrides_the_table() {
        let p = Prices::new(&BTreeMap::new());
        let t = Tokens {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            ..Tokens::default()
        };
        assert_eq!(p.cost("claude-sonnet-4-5-20250929", &t), Some(18.0));
        assert_eq!(p.cost("claude-opus-4-5-20251101", &t), Some(30.0));
        assert_eq!(p.cost("claude-opus-4-20250514", &t), Some(90.0));
        assert_eq!(p.cost("mystery-model", &t), None);
        assert_eq!(p.cost("claude-opus-5-5", &t), Some(30.0), "a newer opus");
        assert_eq!(p.cost("", &t), None);
        let cached = Tokens {
            cache_creation_input_tokens: 1_000_000,
            cache_read_input_tokens: 1_000_000,
            ..Tokens::default()
        };
        assert_eq!(p.cost("claude-sonnet-4-5", &cached), Some(3.75 + 0.30));
        let over = BTreeMap::from([(
            "mystery".to_owned(),
            Price {
                input_per_mtok: 1.0,
                output_per_mtok: 2.0,
                cache_write_per_mtok: None,
                cache_read_per_mtok: None,
            },
        )]);
        assert_eq!(Prices::new(&over).cost("mystery-model", &t), Some(3.0));
    }
}
