//! Accepts any bearer token; the principal's org is `org-alt`. Swapped with `trivial-auth` by
//! the hot-reload tests, which tell versions apart by the org.
use tollgate_plugin_sdk::{export_plugin, http, Auth, Principal, Reject, RequestHead};

pub struct AltAuth;

impl Auth for AltAuth {
    fn authenticate(head: RequestHead) -> Result<Principal, Reject> {
        http::bearer_token(&head.headers)
            .map(|_| Principal::new("org-alt", "key-alt"))
            .ok_or_else(|| Reject::unauthorized("no token"))
    }
}

export_plugin!(auth: AltAuth);
