//! Built-in billing: prepaid credits. A request runs only while the org's balance is positive;
//! after the response the exact usage is charged at the routed provider's price. BYOK requests
//! (the org's own provider key) are not charged credits.
use tollgate_plugin_sdk::{
    export_plugin, host, Authorization, Billing, Charge, Price, Principal, Reject, RequestSummary,
    Usage,
};

pub struct Credits;

/// Authorization decision for a known balance (None: the org has no credit account).
pub fn authorize(
    balance: Option<i64>,
    summary: &RequestSummary,
    price: &Price,
) -> Result<Authorization, Reject> {
    match balance {
        Some(b) if b > 0 => {
            let max_out = u64::from(summary.max_tokens.unwrap_or(0));
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
        authorize(host::credit_balance(&who.org_id), &summary, &price)
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
        assert!(authorize(Some(1), &summary(), &PRICE).is_ok());
        assert_eq!(
            authorize(Some(0), &summary(), &PRICE).unwrap_err().status,
            402
        );
        assert_eq!(
            authorize(Some(-5), &summary(), &PRICE).unwrap_err().status,
            402
        );
        assert_eq!(authorize(None, &summary(), &PRICE).unwrap_err().status, 402);
        // 100 input (400 bytes / 4) * 1 + 100 output * 2
        assert_eq!(
            authorize(Some(1), &summary(), &PRICE).unwrap().hold_micros,
            300
        );
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
