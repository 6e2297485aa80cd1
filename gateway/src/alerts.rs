//! Low-balance alerts: every `low_balance_check_ms` the orgs with a threshold are checked; one
//! whose spendable balance fell below it gets one `balance.low` webhook (claimed in the
//! database, so one replica sends it), re-armed once the balance is back above. The payload asks
//! for `auto_top_up_usd` when the org set one: the receiver (the operator's billing system) adds
//! credits through the admin API — the gateway never moves money by itself. Bodies are signed
//! (`x-tollgate-signature: sha256=<HMAC of the body under the server secret>`).

use std::time::Duration;

use bytes::Bytes;
use pingora_core::connectors::http::Connector;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;

use crate::store::{now_ms, AlertWatch, Store};

/// How long one webhook delivery may take, connect to status.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the checks until the runtime stops.
pub fn spawn_low_balance_alerts(
    store: Store,
    secret: Vec<u8>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let connector = Connector::new(None);
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = check_all(&store, &connector, &secret).await {
                tracing::warn!(error = %e, "low-balance check failed");
            }
        }
    })
}

/// One round over every org with a threshold (a page at a time).
pub async fn check_all(
    store: &Store,
    connector: &Connector,
    secret: &[u8],
) -> Result<(), crate::store::StoreError> {
    let mut after = String::new();
    loop {
        let page = store.alert_watches(&after, 200).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.org_id.clone();
        for watch in &page {
            check_one(store, connector, secret, watch).await?;
        }
    }
}

async fn check_one(
    store: &Store,
    connector: &Connector,
    secret: &[u8],
    watch: &AlertWatch,
) -> Result<(), crate::store::StoreError> {
    let Some(balance) = store.balance(&watch.org_id).await? else {
        return Ok(());
    };
    let below = balance < watch.settings.threshold_micros;
    if !below {
        if watch.alerted {
            store.rearm_low_balance_alert(&watch.org_id).await?;
        }
        return Ok(());
    }
    if watch.alerted
        || !store
            .claim_low_balance_alert(&watch.org_id, now_ms())
            .await?
    {
        return Ok(());
    }
    let s = &watch.settings;
    let body = serde_json::json!({
        "type": "balance.low",
        "org_id": watch.org_id,
        "balance_usd": balance as f64 / 1e6,
        "threshold_usd": s.threshold_micros as f64 / 1e6,
        "auto_top_up_usd": (s.auto_top_up_micros > 0).then(|| s.auto_top_up_micros as f64 / 1e6),
        "at_ms": now_ms(),
    })
    .to_string();
    match deliver(connector, &s.webhook, secret, body.into_bytes()).await {
        Ok(status) if (200..300).contains(&status) => {
            tracing::info!(org = %watch.org_id, balance, "low-balance alert delivered");
        }
        outcome => {
            // Given back: the next round tries again.
            tracing::warn!(org = %watch.org_id, ?outcome, webhook_host = %webhook_host(&s.webhook),
                "low-balance webhook not accepted; retrying next round");
            store.rearm_low_balance_alert(&watch.org_id).await?;
        }
    }
    Ok(())
}

/// POSTs `body` to `url` (http or https), signed; the response status.
pub async fn deliver(
    connector: &Connector,
    url: &str,
    secret: &[u8],
    body: Vec<u8>,
) -> Result<u16, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("webhook URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("webhook URL must be http:// or https://".into()),
    };
    let host = uri.host().ok_or("webhook URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let signature = crate::keys::keyed_hash(secret, &String::from_utf8_lossy(&body));
    let exchange = async {
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("resolving {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} has no address"))?;
        let peer = HttpPeer::new(addr, tls, host.clone());
        let (mut session, _) = connector
            .get_http_session(&peer)
            .await
            .map_err(|e| e.to_string())?;
        let mut header =
            RequestHeader::build("POST", path.as_bytes(), None).map_err(|e| e.to_string())?;
        let host_header = if uri.port_u16().is_some() {
            format!("{host}:{port}")
        } else {
            host.clone()
        };
        for (name, value) in [
            ("host", host_header),
            ("content-type", "application/json".to_string()),
            ("content-length", body.len().to_string()),
            ("x-tollgate-signature", format!("sha256={signature}")),
            (
                "user-agent",
                concat!("tollgate/", env!("CARGO_PKG_VERSION")).to_string(),
            ),
        ] {
            header
                .insert_header(name, value)
                .map_err(|e| e.to_string())?;
        }
        session
            .write_request_header(Box::new(header))
            .await
            .map_err(|e| e.to_string())?;
        session
            .write_request_body(Bytes::from(body), true)
            .await
            .map_err(|e| e.to_string())?;
        session
            .finish_request_body()
            .await
            .map_err(|e| e.to_string())?;
        session
            .read_response_header()
            .await
            .map_err(|e| e.to_string())?;
        let status = session
            .response_header()
            .map(|h| h.status.as_u16())
            .ok_or("no response header")?;
        session.shutdown().await;
        Ok(status)
    };
    tokio::time::timeout(DELIVERY_TIMEOUT, exchange)
        .await
        .map_err(|_| "webhook timed out".to_string())?
}

/// The host of a webhook URL, for logs: the rest of it (path, query) often carries the
/// receiver's token.
fn webhook_host(url: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_string))
        .unwrap_or_else(|| "(unparsable)".into())
}
