//! The SSRF guard: media URLs come from a third party, so every URL, each redirect hop and
//! every address a name resolves to must be public, unless `ALLOW_PRIVATE_NETWORKS` lifts
//! it (the tests' loopback servers need that).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// Whether `ip` is an address a fetched URL must never reach: loopback, private, link-local
/// (cloud metadata at 169.254.169.254), unique-local, carrier-grade NAT, unspecified,
/// multicast or broadcast, also inside IPv4-mapped IPv6.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg[0] & 0xffc0) == 0xfe80 // link local fe80::/10
                || (seg[0] == 0x64 && seg[1] == 0xff9b) // NAT64 of anything
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT 100.64.0.0/10
        || a == 0
}

/// Checks a URL before it is requested: http or https, and no forbidden literal address.
/// (Names are checked when they resolve, by [`GuardedResolver`].)
pub fn check_url(url: &Url, allow_private: bool) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("refusing a {}:// URL", url.scheme()));
    }
    let Some(host) = url.host() else {
        return Err("refusing a URL without a host".into());
    };
    if allow_private {
        return Ok(());
    }
    let ip = match host {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(d) if d.eq_ignore_ascii_case("localhost") => {
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        }
        url::Host::Domain(_) => None,
    };
    match ip {
        Some(ip) if is_forbidden(ip) => Err(format!(
            "refusing {ip}: a private, loopback or link-local address (set \
             ALLOW_PRIVATE_NETWORKS=true only for tests)"
        )),
        _ => Ok(()),
    }
}

/// A resolver that refuses names resolving to forbidden addresses.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    allow_private: bool,
}

impl GuardedResolver {
    /// A resolver; `allow_private` lifts the guard.
    pub fn new(allow_private: bool) -> Arc<Self> {
        Arc::new(Self { allow_private })
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let lookup = host.clone();
            let addrs: Vec<SocketAddr> =
                tokio::task::spawn_blocking(move || (lookup.as_str(), 0).to_socket_addrs())
                    .await
                    .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })??
                    .collect();
            if !allow_private && let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
                return Err(format!(
                    "refusing {host}: it resolves to {}, a private, loopback or link-local address",
                    bad.ip()
                )
                .into());
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "203.0.113.9", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked_for_scheme_and_literal_addresses() {
        let check = |u: &str, allow| check_url(&Url::parse(u).unwrap(), allow);
        assert!(check("https://v26-web.douyinvod.com/x", false).is_ok());
        assert!(check("http://169.254.169.254/latest/meta-data/", false).is_err());
        assert!(check("http://10.0.0.1/x", false).is_err());
        assert!(check("http://[::1]:8080/x", false).is_err());
        assert!(check("http://localhost/x", false).is_err());
        assert!(check("http://127.0.0.1:9/x", true).is_ok());
        let e = check("file:///etc/passwd", true).unwrap_err();
        assert!(e.contains("file://"), "{e}");
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        let r = GuardedResolver::new(false);
        let e = r
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("refused");
        assert!(e.to_string().contains("private, loopback"), "{e}");
        let ok = GuardedResolver::new(true)
            .resolve("localhost".parse().unwrap())
            .await;
        assert!(ok.is_ok());
    }
}
