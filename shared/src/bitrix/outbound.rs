//! The HTTP client that calls portals and the OAuth server, built so that a request cannot
//! turn it against us: portal hosts are named by whoever installs the app, so no address
//! inside our network (private, loopback, link-local, the cloud's metadata service) is
//! ever connected to, checked on the addresses a name resolves to, not on the name; no
//! redirect is followed; and no answer is read past a size.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The largest answer read: a `batch` of 50 list pages of 50 rows stays well under it.
pub const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Which hosts the client may connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Public addresses only: real portals and Bitrix24's OAuth server (the default).
    Public,
    /// Also the loopback (127.0.0.0/8, ::1): only for the sandbox portal and tests, which
    /// answer there. Never set for real portals.
    AlsoLoopback,
}

impl Reach {
    /// `allow_loopback` is the deployment's explicit choice (the sandbox's, or a test's).
    pub fn from_flag(allow_loopback: bool) -> Self {
        if allow_loopback { Self::AlsoLoopback } else { Self::Public }
    }

    /// Whether a connection to `ip` is allowed.
    pub fn allows(self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if ip.is_loopback() {
            return self == Self::AlsoLoopback;
        }
        match ip {
            IpAddr::V4(v4) => is_public_v4(v4),
            IpAddr::V6(v6) => is_public_v6(v6),
        }
    }
}

/// An IPv4 address carried in IPv6 (`::ffff:a.b.c.d`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()            // 0.0.0.0
        || a == 0                    // 0.0.0.0/8, "this network"
        || ip.is_private()           // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local()        // 169.254/16, the metadata service 169.254.169.254 among them
        || (a == 100 && (b & 0xc0) == 64) // 100.64/10, carrier-grade NAT
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // 192.0.0/24, IETF protocol assignments
        || (a == 198 && (b & 0xfe) == 18) // 198.18/15, benchmarking
        || ip.is_documentation()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a >= 240) // 240/4, reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_unique_local()          // fc00::/7
        || ip.is_unicast_link_local()    // fe80::/10
        || (first & 0xffc0) == 0xfec0    // fec0::/10, the old site-local
        || ip.is_multicast()
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        // NAT64 (64:ff9b::/96) and the deprecated IPv4-compatible form reach IPv4 addresses:
        // refused rather than decoded, as no portal is published so.
        || (first == 0x64 && ip.segments()[1] == 0xff9b)
        || ip.segments()[..6] == [0; 6])
}

/// Resolves with the system's resolver and keeps only the addresses `reach` allows; a name
/// with none left is an error, so the request fails before any connection.
struct GuardedResolver {
    reach: Reach,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let reach = self.reach;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found.into_iter().filter(|a| reach.allows(a.ip())).collect();
            if allowed.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The client: no proxy (the resolver must see the portal's name), no redirects, the
/// guarded resolver. Literal addresses in URLs never reach a resolver: see [`check_url`].
pub fn client(timeout: Duration, reach: Reach) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver { reach }))
        .build()
        .expect("the HTTP client builds")
}

/// Refuses a URL whose host is a literal address `reach` does not allow (a name is checked
/// when it resolves).
pub fn check_url(url: &reqwest::Url, reach: Reach) -> Result<(), String> {
    let host = url.host_str().ok_or("the URL has no host")?;
    // An IPv6 host is written in brackets.
    let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() else { return Ok(()) };
    if reach.allows(ip) { Ok(()) } else { Err(format!("{ip} is not a public address")) }
}

/// The body of `response`, read in chunks and refused past `MAX_ANSWER`.
pub async fn capped_body(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let too_big = || format!("the answer is larger than {} MiB", MAX_ANSWER / (1024 * 1024));
    if response.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.without_url().to_string())? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(reach: Reach, ip: &str) -> bool {
        reach.allows(ip.parse().unwrap())
    }

    #[test]
    fn addresses_inside_our_network_are_refused_public_ones_allowed() {
        for ip in [
            "0.0.0.0", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "100.127.255.254",
            "127.0.0.1", "224.0.0.1", "255.255.255.255", "::", "::1", "fc00::1", "fd12:3456::1", "fe80::1",
            "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a00:1", "::10.0.0.1",
        ] {
            assert!(!allowed(Reach::Public, ip), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "100.128.0.1", "172.32.0.1", "2a00:1450:4001:80b::200e", "::ffff:93.184.216.34"] {
            assert!(allowed(Reach::Public, ip), "{ip} is public");
        }
    }

    #[test]
    fn only_an_explicit_setting_opens_the_loopback_and_nothing_else_private() {
        for ip in ["127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1"] {
            assert!(allowed(Reach::AlsoLoopback, ip), "{ip}");
            assert!(!allowed(Reach::Public, ip), "{ip}");
        }
        for ip in ["10.0.0.1", "169.254.169.254", "fd00::1", "0.0.0.0"] {
            assert!(!allowed(Reach::AlsoLoopback, ip), "{ip}");
        }
    }

    #[test]
    fn literal_private_hosts_are_refused_before_any_connection() {
        for url in ["http://10.0.0.1/rest/", "https://[::ffff:169.254.169.254]/", "http://[fd00::1]:8080/", "http://0.0.0.0/"] {
            assert!(check_url(&url.parse().unwrap(), Reach::Public).is_err(), "{url}");
        }
        assert!(check_url(&"https://portal.bitrix24.com/rest/".parse().unwrap(), Reach::Public).is_ok());
    }
}
