//! Model prices and the cost of a call, exact to the micro-dollar.
//!
//! Prices come from `pricing.toml` (shipped in the repository and compiled in) and an optional
//! operator file (`PRICING_FILE`) that replaces or adds models. The rules:
//! - input tokens include cached ones (Gemini's `promptTokenCount`, OpenAI's `prompt_tokens`);
//!   the cached part is billed once, at the cache-read price, the rest at the input price;
//! - thinking tokens are billed as output;
//! - a prompt with more input tokens than the model's long-context threshold uses the long prices;
//! - hosted mode bills the provider cost plus the markup; bring-your-own-key mode bills nothing
//!   (the provider cost is still recorded, with every token);
//! - an unknown or retired model is an error, never a zero cost.
//!
//! Arithmetic is integer: prices are micro-dollars per million tokens, a cost is the exact sum
//! divided once by a million and rounded half up.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::Deserialize;

use crate::money::Usd;
use crate::tenants::settings::ExecutionMode;

/// The prices shipped with the server.
pub const SHIPPED: &str = include_str!("../../pricing.toml");

/// Token counts of one call, normalised across providers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    /// All prompt tokens, cached ones included.
    pub input: u64,
    /// The cached part of `input`.
    pub cached: u64,
    /// Visible output tokens (thinking excluded).
    pub output: u64,
    /// Thinking (reasoning) tokens.
    pub thinking: u64,
}

impl Tokens {
    /// Every token of the call.
    pub fn total(&self) -> u64 {
        self.input + self.output + self.thinking
    }
}

/// Why a call cannot be priced.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PricingError {
    /// The model is not in the price list.
    #[error("no price for model {0:?}: add it to the pricing file")]
    UnknownModel(String),
    /// The model is past its retirement date.
    #[error("model {model:?} retired on {retired}")]
    Retired {
        /// The model.
        model: String,
        /// Its last day.
        retired: NaiveDate,
    },
    /// The pricing file is invalid.
    #[error("invalid pricing file: {0}")]
    Invalid(String),
}

/// The price of one model, in micro-dollars per million tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelPrice {
    /// The provider serving it.
    pub provider: String,
    /// Uncached input.
    pub input: i64,
    /// Output and thinking.
    pub output: i64,
    /// Cached input.
    pub cache_read: i64,
    /// Input tokens above which the long prices apply.
    pub long_context_threshold: Option<u64>,
    /// Long-context uncached input.
    pub long_input: Option<i64>,
    /// Long-context output.
    pub long_output: Option<i64>,
    /// Long-context cached input.
    pub long_cache_read: Option<i64>,
    /// Last day the model may be called.
    pub retires: Option<NaiveDate>,
}

/// The cost of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    /// What the provider charges.
    pub base: Usd,
    /// What the tenant is billed by the platform.
    pub billed: Usd,
}

/// The price list.
#[derive(Clone, Debug)]
pub struct Pricing {
    models: HashMap<String, ModelPrice>,
    /// Hosted markup in basis points (20% = 2000).
    markup_bp: i64,
}

#[derive(Deserialize)]
struct File {
    markup_percent: Option<String>,
    #[serde(default)]
    models: HashMap<String, FileModel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    provider: String,
    input: String,
    output: String,
    cache_read: String,
    long_context_threshold: Option<u64>,
    long_input: Option<String>,
    long_output: Option<String>,
    long_cache_read: Option<String>,
    retires: Option<String>,
}

fn price(model: &str, field: &str, text: &str) -> Result<i64, PricingError> {
    Usd::parse(text)
        .map(|u| u.0)
        .map_err(|e| PricingError::Invalid(format!("{model}.{field}: {e}")))
}

fn optional(model: &str, field: &str, text: &Option<String>) -> Result<Option<i64>, PricingError> {
    text.as_deref().map(|t| price(model, field, t)).transpose()
}

impl Pricing {
    /// The shipped prices, with `operator` (the contents of `PRICING_FILE`) laid over them.
    pub fn load(operator: Option<&str>) -> Result<Pricing, PricingError> {
        let mut pricing = Pricing::parse(SHIPPED)?;
        if let Some(text) = operator {
            let over = Pricing::parse_file(text)?;
            pricing.models.extend(over.models);
            if let Some(bp) = over.markup_bp {
                pricing.markup_bp = bp;
            }
        }
        Ok(pricing)
    }

    /// Parses one pricing file on its own.
    pub fn parse(text: &str) -> Result<Pricing, PricingError> {
        let parsed = Pricing::parse_file(text)?;
        Ok(Pricing {
            models: parsed.models,
            markup_bp: parsed.markup_bp.unwrap_or(0),
        })
    }

    fn parse_file(text: &str) -> Result<Parsed, PricingError> {
        let file: File = toml::from_str(text).map_err(|e| PricingError::Invalid(e.to_string()))?;
        let markup_bp = file
            .markup_percent
            .as_deref()
            .map(|m| {
                Usd::parse(m)
                    .map(|u| u.0 / 10_000)
                    .map_err(|e| PricingError::Invalid(format!("markup_percent: {e}")))
            })
            .transpose()?;
        let mut models = HashMap::new();
        for (name, m) in file.models {
            let retires = m
                .retires
                .as_deref()
                .map(|d| {
                    NaiveDate::parse_from_str(d, "%Y-%m-%d")
                        .map_err(|e| PricingError::Invalid(format!("{name}.retires: {e}")))
                })
                .transpose()?;
            let price = ModelPrice {
                provider: m.provider.clone(),
                input: price(&name, "input", &m.input)?,
                output: price(&name, "output", &m.output)?,
                cache_read: price(&name, "cache_read", &m.cache_read)?,
                long_context_threshold: m.long_context_threshold,
                long_input: optional(&name, "long_input", &m.long_input)?,
                long_output: optional(&name, "long_output", &m.long_output)?,
                long_cache_read: optional(&name, "long_cache_read", &m.long_cache_read)?,
                retires,
            };
            if price.long_context_threshold.is_some()
                && (price.long_input.is_none() || price.long_output.is_none())
            {
                return Err(PricingError::Invalid(format!(
                    "{name}: long_context_threshold needs long_input and long_output"
                )));
            }
            models.insert(name, price);
        }
        Ok(Parsed { models, markup_bp })
    }

    /// The price of `model`, if listed.
    pub fn model(&self, model: &str) -> Option<&ModelPrice> {
        self.models.get(model)
    }

    /// The hosted markup, in percent.
    pub fn markup_percent(&self) -> f64 {
        self.markup_bp as f64 / 100.0
    }

    /// The cost of a call to `model` with `tokens`, on `day`, in `mode`.
    pub fn cost(
        &self,
        model: &str,
        tokens: &Tokens,
        mode: ExecutionMode,
        day: NaiveDate,
    ) -> Result<Cost, PricingError> {
        let p = self
            .models
            .get(model)
            .ok_or_else(|| PricingError::UnknownModel(model.to_owned()))?;
        if let Some(retired) = p.retires {
            if day > retired {
                return Err(PricingError::Retired {
                    model: model.to_owned(),
                    retired,
                });
            }
        }
        let long = p.long_context_threshold.is_some_and(|t| tokens.input > t);
        let (input, output, cache) = if long {
            (
                p.long_input.unwrap_or(p.input),
                p.long_output.unwrap_or(p.output),
                p.long_cache_read.unwrap_or(p.cache_read),
            )
        } else {
            (p.input, p.output, p.cache_read)
        };
        let cached = tokens.cached.min(tokens.input);
        let uncached = tokens.input - cached;
        // Micro-dollars × tokens, exact; divided by a million once.
        let exact: i128 = uncached as i128 * input as i128
            + cached as i128 * cache as i128
            + (tokens.output + tokens.thinking) as i128 * output as i128;
        let base = Usd(round_div(exact, 1_000_000));
        let billed = match mode {
            ExecutionMode::Hosted => Usd(round_div(
                base.0 as i128 * (10_000 + self.markup_bp) as i128,
                10_000,
            )),
            ExecutionMode::ByoKey => Usd(0),
        };
        Ok(Cost { base, billed })
    }
}

struct Parsed {
    models: HashMap<String, ModelPrice>,
    markup_bp: Option<i64>,
}

/// `n / d` rounded half up (both non-negative).
fn round_div(n: i128, d: i128) -> i64 {
    ((n + d / 2) / d) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_PRICES: &str = r#"
markup_percent = "20"
[models.flash]
provider = "gemini"
input = "0.30"
output = "2.50"
cache_read = "0.075"
[models.pro]
provider = "gemini"
input = "1.25"
output = "10.00"
cache_read = "0.31"
long_context_threshold = 200000
long_input = "2.50"
long_output = "15.00"
long_cache_read = "0.625"
retires = "2027-06-30"
"#;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 29).unwrap()
    }

    fn cost(model: &str, t: Tokens, mode: ExecutionMode) -> Result<Cost, PricingError> {
        Pricing::parse(TEST_PRICES)
            .unwrap()
            .cost(model, &t, mode, day())
    }

    #[test]
    fn plain_input_and_output() {
        // 10,000 × $0.30/M = $0.003; 2,000 × $2.50/M = $0.005 → $0.008; +20% = $0.0096.
        let c = cost(
            "flash",
            Tokens {
                input: 10_000,
                output: 2_000,
                ..Tokens::default()
            },
            ExecutionMode::Hosted,
        )
        .unwrap();
        assert_eq!(c.base, Usd(8_000));
        assert_eq!(c.billed, Usd(9_600));
    }

    #[test]
    fn cached_tokens_are_billed_once_at_the_cache_rate() {
        // 100,000 input of which 60,000 cached: 40,000 × 0.30 = 12,000 µ$ (0.012),
        // 60,000 × 0.075 = 4,500 µ$; 1,000 output × 2.50 = 2,500 µ$. Total 19,000 µ$.
        let t = Tokens {
            input: 100_000,
            cached: 60_000,
            output: 1_000,
            thinking: 0,
        };
        assert_eq!(
            cost("flash", t, ExecutionMode::Hosted).unwrap().base,
            Usd(19_000)
        );
    }

    #[test]
    fn thinking_tokens_are_billed_as_output() {
        // 1,000 input × 0.30 = 300 µ$; (500 output + 1,500 thinking) × 2.50 = 5,000 µ$.
        let t = Tokens {
            input: 1_000,
            cached: 0,
            output: 500,
            thinking: 1_500,
        };
        assert_eq!(
            cost("flash", t, ExecutionMode::Hosted).unwrap().base,
            Usd(5_300)
        );
    }

    #[test]
    fn long_context_tier_applies_above_the_threshold() {
        // At the threshold: 200,000 × 1.25 = 250,000 µ$; 1,000 × 10 = 10,000 µ$.
        let at = Tokens {
            input: 200_000,
            output: 1_000,
            ..Tokens::default()
        };
        assert_eq!(
            cost("pro", at, ExecutionMode::Hosted).unwrap().base,
            Usd(260_000)
        );
        // Above it, every token at the long price: 200,001 × 2.50 = 500,002.5 → 500,003 µ$;
        // 1,000 × 15 = 15,000 µ$.
        let above = Tokens {
            input: 200_001,
            output: 1_000,
            ..Tokens::default()
        };
        assert_eq!(
            cost("pro", above, ExecutionMode::Hosted).unwrap().base,
            Usd(515_003)
        );
    }

    #[test]
    fn markup_and_byo_mode() {
        let t = Tokens {
            input: 1_000_000,
            output: 0,
            ..Tokens::default()
        };
        let hosted = cost("flash", t, ExecutionMode::Hosted).unwrap();
        assert_eq!((hosted.base, hosted.billed), (Usd(300_000), Usd(360_000)));
        let byo = cost("flash", t, ExecutionMode::ByoKey).unwrap();
        assert_eq!(
            (byo.base, byo.billed),
            (Usd(300_000), Usd(0)),
            "BYO: recorded, not billed"
        );
    }

    #[test]
    fn rounding_is_half_up_per_call() {
        // 1 input token × $0.30/M = 0.3 µ$ → 0; 2 tokens = 0.6 µ$ → 1.
        assert_eq!(
            cost(
                "flash",
                Tokens {
                    input: 1,
                    ..Tokens::default()
                },
                ExecutionMode::Hosted
            )
            .unwrap()
            .base,
            Usd(0)
        );
        assert_eq!(
            cost(
                "flash",
                Tokens {
                    input: 2,
                    ..Tokens::default()
                },
                ExecutionMode::Hosted
            )
            .unwrap()
            .base,
            Usd(1)
        );
    }

    #[test]
    fn unknown_and_retired_models_are_errors() {
        assert_eq!(
            cost("nope", Tokens::default(), ExecutionMode::Hosted),
            Err(PricingError::UnknownModel("nope".into()))
        );
        let p = Pricing::parse(TEST_PRICES).unwrap();
        let late = NaiveDate::from_ymd_opt(2027, 7, 1).unwrap();
        assert!(matches!(
            p.cost("pro", &Tokens::default(), ExecutionMode::Hosted, late),
            Err(PricingError::Retired { .. })
        ));
    }

    #[test]
    fn the_shipped_file_parses_and_operators_override_it() {
        let shipped = Pricing::load(None).unwrap();
        assert!(shipped.model("gemini-2.5-flash").is_some());
        assert_eq!(shipped.markup_percent(), 20.0);
        let over = Pricing::load(Some(
            "markup_percent = \"35\"\n[models.\"gemini-2.5-flash\"]\nprovider = \"gemini\"\ninput = \"1\"\noutput = \"2\"\ncache_read = \"0.5\"\n",
        ))
        .unwrap();
        assert_eq!(over.model("gemini-2.5-flash").unwrap().input, 1_000_000);
        assert!(
            over.model("gemini-2.5-pro").is_some(),
            "other shipped models stay"
        );
        assert_eq!(over.markup_percent(), 35.0);
        assert!(Pricing::parse("[models.x]\nprovider = \"gemini\"\ninput = \"abc\"\noutput = \"1\"\ncache_read = \"1\"").is_err());
        assert!(Pricing::parse("[models.x]\nprovider = \"gemini\"\ninput = \"1\"\noutput = \"1\"\ncache_read = \"1\"\nlong_context_threshold = 5").is_err());
    }
}
