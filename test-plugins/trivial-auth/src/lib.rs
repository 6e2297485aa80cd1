//! Accepts `Authorization: Bearer <token>` where the token equals the config's `token`
//! (default `ok`); the principal's org is `org-trivial`.
use tollgate_plugin_sdk::{export_plugin, host, http, Auth, Principal, Reject, RequestHead};

pub struct TrivialAuth;

impl Auth for TrivialAuth {
    fn authenticate(head: RequestHead) -> Result<Principal, Reject> {
        let config = host::config_json();
        let expected = config["token"].as_str().unwrap_or("ok");
        match http::bearer_token(&head.headers) {
            Some(token) if token == expected => {
                let mut who = Principal::new("org-trivial", "key-trivial");
                who.attributes.push(("request-id".into(), head.id));
                Ok(who)
            }
            _ => Err(Reject::unauthorized("bad token")),
        }
    }
}

export_plugin!(auth: TrivialAuth);

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_plugin_sdk::testing::TestHost;

    fn head(auth: &str) -> RequestHead {
        RequestHead {
            id: "r1".into(),
            method: "POST".into(),
            path: "/".into(),
            headers: vec![("authorization".into(), auth.into())],
            client_ip: String::new(),
        }
    }

    #[test]
    fn accepts_configured_token_only() {
        TestHost::install(TestHost {
            config: r#"{"token":"sesame"}"#.into(),
            ..Default::default()
        });
        assert!(TrivialAuth::authenticate(head("Bearer sesame")).is_ok());
        assert_eq!(
            TrivialAuth::authenticate(head("Bearer ok"))
                .unwrap_err()
                .status,
            401
        );
    }
}
