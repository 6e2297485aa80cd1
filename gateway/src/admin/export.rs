//! `GET /admin/orgs/{org}/usage/export?format=jsonl|csv&since=&until=&content=true`: the
//! org's usage (with its retained content when asked), streamed by the admin listener a page at
//! a time ([`crate::retention::export::Exporter`]). Allowed to the operator and to members who
//! may read the whole org's usage; audited as `usage.export`. Through [`AdminApi::call`] (no
//! stream) it answers 400: the CLI has `tollgate usage export`.

use serde_json::json;

use super::auth::{org_for, Access, Action, Caller};
use super::{query_int, AdminApi, AdminError, AdminRequest, AdminResult};
use crate::retention::export::{ExportFormat, Exporter};
use crate::store::{Audit, ExportQuery};

/// A query parameter's text (None when absent).
fn query_str<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|p| p.split_once('=').or(Some((p, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Checks the caller and the query; the exporter to stream from, and its format.
pub async fn start(
    api: &AdminApi,
    caller: &Caller,
    org: &str,
    query: &str,
) -> AdminResult<(Exporter, ExportFormat)> {
    let (org, reach) = org_for(api, caller, org, Action::UsageRead).await?;
    if reach != Access::All {
        return Err(AdminError::new(
            403,
            "permission_error",
            "exporting covers the whole org's usage: this role may read only its own keys' usage",
        ));
    }
    let f = query_str(query, "format").unwrap_or("jsonl");
    let format = ExportFormat::parse(f).ok_or_else(|| {
        AdminError::bad_request(format!("'format' must be jsonl or csv (not '{f}')"))
    })?;
    let content = match query_str(query, "content") {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(AdminError::bad_request(format!(
                "'content' must be true or false (not '{other}')"
            )))
        }
    };
    let q = ExportQuery {
        org_id: org.id.clone(),
        since: query_int(query, "since")?,
        until: query_int(query, "until")?,
        content,
    };
    let entry = Audit::new(&caller.actor(), &org.id, "usage.export", &org.id).with_details(
        json!({"format": query_str(query, "format").unwrap_or("jsonl"), "since": q.since,
               "until": q.until, "content": content}),
    );
    api.store.append_audit(&entry).await?;
    Ok((Exporter::new(api.store.clone(), q, format), format))
}

impl AdminApi {
    /// The export `req` asks for, after authentication and the role check; the error answer
    /// otherwise.
    pub async fn export(&self, req: &AdminRequest) -> Result<(Exporter, ExportFormat), AdminError> {
        let (handler, params) = super::route(&req.method, &req.path)?;
        if handler != super::Handler::UsageExport {
            return Err(AdminError::not_found(format!("route {}", req.path)));
        }
        let caller = super::auth::authenticate(self, req.header("authorization")).await?;
        let org = params.first().map(String::as_str).unwrap_or_default();
        start(self, &caller, org, &req.query).await
    }
}
