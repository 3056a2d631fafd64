//! What every response carries (the security headers, here and on Lambda), and the local
//! server's check of the `Host` header.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// `X-Content-Type-Options: nosniff` and a `Content-Security-Policy` on every response, and
/// `Cache-Control: no-store` on every one that does not set its own (only the static assets
/// do): the pages carry session tokens, the JSON is a user's own, the blob URLs are signed.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let policy = content_security_policy(request.uri().query());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.entry(header::CONTENT_SECURITY_POLICY).or_insert(policy);
    }
    response
}

/// Who may frame the response. Bitrix24 names the portal in the `DOMAIN` query (and its scheme
/// in `PROTOCOL`, `0` http, `1` https) of every page it opens in a frame: placements, the app's
/// page, the connector settings, the installer (`api-reference/widgets/index.md`, "What the
/// Handler Receives"; `local-integrations/site-does-not-allow-connection.md`: "specify the
/// exact Bitrix24 source where the application is being opened"). That portal, and no other, may frame it: every
/// handler that puts a token in a page has checked `DOMAIN` against the domain stored for the
/// portal and refused a mismatch, so a token page is framed only by its own portal, and a page
/// for a forged `DOMAIN` is an error page that carries nothing. No wildcard such as
/// `*.bitrix24.com`: that would let every other customer's portal frame ours. Responses
/// without a `DOMAIN` (the JSON API, assets, blobs, the sandbox's launchers) are framed by
/// this server only.
fn content_security_policy(query: Option<&str>) -> String {
    let (mut domain, mut protocol) = (None, None);
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*name {
            "DOMAIN" => domain = Some(value.to_ascii_lowercase()),
            "PROTOCOL" => protocol = Some(value),
            _ => {}
        }
    }
    let portal = domain.filter(|d| is_host(d)).map(|d| {
        let scheme = if protocol.as_deref() == Some("0") { "http" } else { "https" };
        format!(" {scheme}://{d}")
    });
    format!("frame-ancestors 'self'{}; object-src 'none'; base-uri 'none'", portal.unwrap_or_default())
}

/// A host name with an optional port, and nothing that could end the CSP source or add one.
fn is_host(value: &str) -> bool {
    let (host, port) = value.split_once(':').unwrap_or((value, "1"));
    !host.is_empty()
        && host.len() <= 253
        && !host.starts_with(['.', '-'])
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// The `Host`s this server answers to: its public address, and the address it listens on (the
/// reverse proxy in front of it, and the loopback checks of an operator). A browser tricked
/// into calling it under another name (DNS rebinding) sends that name and is refused.
#[derive(Debug)]
pub struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    pub fn new(public_url: &str, listening: SocketAddr) -> Self {
        let mut hosts = Vec::new();
        if let Ok(url) = url::Url::parse(public_url)
            && let Some(host) = url.host_str()
        {
            hosts.push(host.to_ascii_lowercase());
            if let Some(port) = url.port_or_known_default() {
                hosts.push(format!("{}:{port}", host.to_ascii_lowercase()));
            }
        }
        let port = listening.port();
        if listening.ip().is_loopback() || listening.ip().is_unspecified() {
            hosts.extend([format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")]);
        } else {
            hosts.push(listening.to_string());
        }
        Self(hosts)
    }

    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        self.0.contains(&host)
    }
}

/// Refuses a request whose `Host` is not one of ours with 421 Misdirected Request.
pub async fn check_host(State(hosts): State<Arc<AllowedHosts>>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| request.uri().authority().map(|a| a.as_str()));
    match host {
        Some(host) if hosts.allows(host) => next.run(request).await,
        _ => {
            let message = "This server does not answer to this host name: use its public address (OLCHAT_PUBLIC_URL).";
            (StatusCode::MISDIRECTED_REQUEST, axum::Json(serde_json::json!({ "error": "wrong_host", "message": message }))).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_framed_by_the_portal_it_names_and_this_server() {
        assert_eq!(
            content_security_policy(Some("DOMAIN=Portal.Bitrix24.de&PROTOCOL=1&LANG=de")),
            "frame-ancestors 'self' https://portal.bitrix24.de; object-src 'none'; base-uri 'none'"
        );
        assert!(content_security_policy(Some("DOMAIN=crm.example.com:8443&PROTOCOL=0")).contains("'self' http://crm.example.com:8443;"));
        assert!(content_security_policy(None).starts_with("frame-ancestors 'self';"));
    }

    #[test]
    fn a_domain_cannot_add_sources_to_the_policy() {
        for forged in ["evil.com%20https://*", "evil.com;%20script-src%20*", "*.bitrix24.com", "evil.com:0", "evil.com:x", "'none'"] {
            assert!(content_security_policy(Some(&format!("DOMAIN={forged}"))).starts_with("frame-ancestors 'self';"), "{forged}");
        }
    }

    #[test]
    fn hosts_are_the_public_address_and_the_listening_one() {
        let hosts = AllowedHosts::new("https://OLChat.example.com", SocketAddr::from(([127, 0, 0, 1], 8080)));
        for host in ["olchat.example.com", "olchat.example.com:443", "127.0.0.1:8080", "localhost:8080"] {
            assert!(hosts.allows(host), "{host}");
        }
        for host in ["evil.com", "olchat.example.com:8080", "olchat.example.com.evil.com", "127.0.0.1:9999", ""] {
            assert!(!hosts.allows(host), "{host}");
        }
    }
}
