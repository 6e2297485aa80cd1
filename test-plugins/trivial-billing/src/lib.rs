//! Authorizes everyone; charges price x usage, nothing for BYOK.
use tollgate_plugin_sdk::{
    export_plugin, Authorization, Billing, Charge, Price, Principal, Reject, RequestSummary, Usage,
};

pub struct TrivialBilling;

impl Billing for TrivialBilling {
    fn authorize(
        _who: Principal,
        _summary: RequestSummary,
        _provider: String,
        _price: Price,
    ) -> Result<Authorization, Reject> {
        Ok(Authorization { hold_micros: 0 })
    }

    fn settle(
        _who: Principal,
        _provider: String,
        price: Price,
        usage: Usage,
        byok: bool,
    ) -> Charge {
        Charge {
            amount_micros: if byok { 0 } else { price.cost_micros(&usage) },
            memo: "usage".into(),
        }
    }
}

export_plugin!(billing: TrivialBilling);
