//! Built-in auth: `Authorization: Bearer <key>` (OpenAI style) or `x-api-key: <key>` (Anthropic
//! style). The presented key is hashed by the host with the server secret and looked up by that
//! hash; the plugin never sees stored secrets and the store never holds plaintext keys.
use tollgate_plugin_sdk::{export_plugin, host, http, Auth, Principal, Reject, RequestHead};

pub struct ApiKeyAuth;

impl Auth for ApiKeyAuth {
    fn authenticate(head: RequestHead) -> Result<Principal, Reject> {
        let presented = http::bearer_token(&head.headers).ok_or_else(|| {
            Reject::unauthorized(
                "Missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
            )
        })?;
        let info = host::lookup_api_key(&host::hash_api_key(presented))
            .ok_or_else(|| Reject::unauthorized("Incorrect API key provided."))?;
        if info.revoked {
            return Err(Reject::unauthorized("This API key has been revoked."));
        }
        if info.expires_at_ms != 0 && host::now_ms() >= info.expires_at_ms {
            return Err(Reject::unauthorized("This API key has expired."));
        }
        Ok(Principal {
            org_id: info.org_id,
            key_id: info.key_id,
            attributes: vec![
                ("scopes".into(), info.scopes),
                ("key-prefix".into(), info.prefix),
            ],
        })
    }
}

export_plugin!(auth: ApiKeyAuth);

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_plugin_sdk::{testing::TestHost, ApiKeyInfo};

    fn head(headers: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            id: "req".into(),
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            client_ip: "127.0.0.1".into(),
        }
    }

    fn key(id: &str, revoked: bool, expires_at_ms: u64) -> ApiKeyInfo {
        ApiKeyInfo {
            key_id: id.into(),
            org_id: "org1".into(),
            prefix: "tg-abc".into(),
            revoked,
            expires_at_ms,
            scopes: "chat".into(),
        }
    }

    fn setup() {
        let mut host = TestHost {
            now_ms: 1_000,
            ..Default::default()
        };
        for (presented, info) in [
            ("good", key("k1", false, 0)),
            ("revoked", key("k2", true, 0)),
            ("expired", key("k3", false, 999)),
        ] {
            host.keys_by_hash
                .insert(TestHost::test_hash(presented), info);
        }
        TestHost::install(host);
    }

    #[test]
    fn accepts_a_live_key_by_either_header() {
        setup();
        let who = ApiKeyAuth::authenticate(head(&[("authorization", "Bearer good")])).unwrap();
        assert_eq!((who.org_id.as_str(), who.key_id.as_str()), ("org1", "k1"));
        assert!(ApiKeyAuth::authenticate(head(&[("x-api-key", "good")])).is_ok());
    }

    #[test]
    fn refuses_missing_unknown_revoked_and_expired_keys() {
        setup();
        for headers in [
            vec![],
            vec![("authorization", "Bearer nope")],
            vec![("authorization", "Bearer revoked")],
            vec![("authorization", "Bearer expired")],
        ] {
            let err = ApiKeyAuth::authenticate(head(&headers)).unwrap_err();
            assert_eq!(err.status, 401, "{headers:?}");
            assert_eq!(err.code, "invalid_api_key");
        }
    }
}
