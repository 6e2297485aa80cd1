//! Built-in billing: prepaid credits. A request runs only while the org's balance is positive;
//! after the response the exact usage is charged at the routed provider's price. BYOK requests
//! (the org's own provider key) are not charged credits.
use tollgate_plugin_sdk::{
    export_plugin, host, Authorization, Billing, Charge, Price, Principal, Reject, RequestSummary,
    Usage,
};

pub struct Credits;

/// Output tokens held for a request that sets no `max_tokens` (plugin config
/// `default_output_tokens` overrides it).
pub const DEFAULT_OUTPUT_TOKENS: u64 = 4096;

/// The configured `default_output_tokens`, else [`DEFAULT_OUTPUT_TOKENS`].
fn default_output_tokens(config: &str) -> u64 {
    tollgate_plugin_sdk::serde_json::from_str::<tollgate_plugin_sdk::serde_json::Value>(config)
        .ok()
        .and_then(|v| v.get("default_output_tokens")?.as_u64())
        .unwrap_or(DEFAULT_OUTPUT_TOKENS)
}

/// Authorization decision for a known balance (None: the org has no credit account). The hold
/// is the request's worst-case cost: its input (~4 bytes a token) and all the output it may ask
/// for; the host reserves it against the balance before the request goes upstream.
pub fn authorize(
    balance: Option<i64>,
    summary: &RequestSummary,
    price: &Price,
    default_output: u64,
) -> Result<Authorization, Reject> {
    match balance {
        Some(b) if b > 0 => {
            let max_out = summary.max_tokens.map_or(default_output, u64::from);
            let estimate = price.cost_micros(&Usage {
                input: u64::from(summary.body_bytes) / 4,
                output: max_out,
                ..Usage::ZERO
            });
            Ok(Authorization {
                hold_micros: estimate,
            })
        }
        _ => Err(Reject::payment_required(
            "Insufficient credits: add credits to this organization to continue.",
        )),
    }
}

impl Billing for Credits {
    fn authorize(
        who: Principal,
        summary: RequestSummary,
        _provider: String,
        price: Price,
    ) -> Result<Authorization, Reject> {
        authorize(
            host::credit_balance(&who.org_id),
            &summary,
            &price,
            default_output_tokens(&host::config()),
        )
    }

    fn settle(_who: Principal, provider: String, price: Price, usage: Usage, byok: bool) -> Charge {
        if byok {
            return Charge {
                amount_micros: 0,
                memo: format!("byok {provider}"),
            };
        }
        Charge {
            amount_micros: price.cost_micros(&usage),
            memo: format!("usage {provider}"),
        }
    }
}

export_plugin!(billing: Credits);

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_plugin_sdk::ApiFormat;

    fn summary() -> RequestSummary {
        RequestSummary {
            format: ApiFormat::OpenaiChat,
            model: "m".into(),
            stream: false,
            max_tokens: Some(100),
            has_tools: false,
            body_bytes: 400,
        }
    }
    const PRICE: Price = Price {
        input: 1_000_000,
        output: 2_000_000,
        cache_read: 0,
        cache_write: 0,
    };

    #[test]
    fn positive_balance_required() {
        assert!(authorize(Some(1), &summary(), &PRICE, 4096).is_ok());
        assert_eq!(
            authorize(Some(0), &summary(), &PRICE, 4096)
                .unwrap_err()
                .status,
            402
        );
        assert_eq!(
            authorize(Some(-5), &summary(), &PRICE, 4096)
                .unwrap_err()
                .status,
            402
        );
        assert_eq!(
            authorize(None, &summary(), &PRICE, 4096)
                .unwrap_err()
                .status,
            402
        );
        // 100 input (400 bytes / 4) * 1 + 100 output * 2
        assert_eq!(
            authorize(Some(1), &summary(), &PRICE, 4096)
                .unwrap()
                .hold_micros,
            300
        );
    }

    #[test]
    fn without_max_tokens_the_default_output_is_held() {
        let mut s = summary();
        s.max_tokens = None;
        // 100 input * 1 + 4096 output * 2
        assert_eq!(
            authorize(Some(1), &s, &PRICE, 4096).unwrap().hold_micros,
            8_292
        );
        assert_eq!(default_output_tokens("{}"), DEFAULT_OUTPUT_TOKENS);
        assert_eq!(
            default_output_tokens(r#"{"default_output_tokens": 10}"#),
            10
        );
        assert_eq!(default_output_tokens("not json"), DEFAULT_OUTPUT_TOKENS);
    }

    #[test]
    fn byok_is_free_and_usage_is_exact() {
        let who = Principal::new("o", "k");
        let usage = Usage {
            input: 10,
            output: 5,
            ..Usage::ZERO
        };
        assert_eq!(
            Credits::settle(who.clone(), "p".into(), PRICE, usage, false).amount_micros,
            20
        );
        assert_eq!(
            Credits::settle(who, "p".into(), PRICE, usage, true).amount_micros,
            0
        );
    }
}
