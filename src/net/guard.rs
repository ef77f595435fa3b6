//! The SSRF guard: the pages, APIs and media a job fetches are named by a third party (a
//! link, a redirect, a record), so every URL, each redirect hop and every address a name
//! resolves to must be public, unless `ALLOW_PRIVATE_NETWORKS` lifts it (the tests' loopback
//! servers need that). Both the extraction client and the downloader use it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// Whether `ip` is an address a fetched URL must never reach: loopback, private, link-local
/// (cloud metadata at 169.254.169.254), unique-local, carrier-grade NAT, unspecified,
/// multicast, broadcast or reserved; and every IPv6 form that carries such an IPv4 address
/// inside (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`,
/// 6to4 `2002::/16`, Teredo `2001::/32`). A NAT64 or 6to4 address of a public IPv4 address
/// stays allowed: IPv6-only hosts reach the world through them.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v6(v6: Ipv6Addr) -> bool {
    let seg = v6.segments();
    let v4_at = |i: usize| Ipv4Addr::from((u32::from(seg[i]) << 16) | u32::from(seg[i + 1]));
    if v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() {
        return true;
    }
    // IPv4-mapped ::ffff:0:0/96 and IPv4-compatible ::/96 (deprecated; `::1` and `::` above).
    if seg[..5] == [0; 5] && (seg[5] == 0xffff || seg[5] == 0) {
        return forbidden_v4(v4_at(6));
    }
    // IPv4-translated ::ffff:0:0:0/96 (SIIT).
    if seg[..4] == [0; 4] && seg[4] == 0xffff && seg[5] == 0 {
        return forbidden_v4(v4_at(6));
    }
    match seg[0] {
        // NAT64: the well-known prefix embeds the IPv4 address; the local-use one
        // 64:ff9b:1::/48 only leads inside a network.
        0x64 if seg[1] == 0xff9b => seg[2] != 0 || forbidden_v4(v4_at(6)),
        // 6to4: the relay's IPv4 address follows the prefix.
        0x2002 => forbidden_v4(v4_at(1)),
        // Teredo: the server's IPv4 address, and the client's with its bits inverted.
        0x2001 if seg[1] == 0 => {
            forbidden_v4(v4_at(2)) || forbidden_v4(Ipv4Addr::from(!u32::from(v4_at(6))))
        }
        s => {
            (s & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s & 0xffc0) == 0xfe80 // link local fe80::/10
                || (s & 0xffc0) == 0xfec0 // site local fec0::/10 (deprecated)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT 100.64.0.0/10
        || a == 0 // "this network" 0.0.0.0/8
        || a >= 240 // reserved 240.0.0.0/4
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0.0/24
        || (a == 198 && (b & 0xfe) == 18) // benchmarking 198.18.0.0/15
}

/// Checks a URL before it is requested: http or https, and no forbidden literal address.
/// (Names are checked when they resolve, by [`GuardedResolver`].)
pub(crate) fn check_url(url: &Url, allow_private: bool) -> Result<(), String> {
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
pub(crate) struct GuardedResolver {
    allow_private: bool,
    trusted_host: Option<String>,
}

impl GuardedResolver {
    /// A resolver; `allow_private` lifts the guard.
    pub fn new(allow_private: bool) -> Arc<Self> {
        Arc::new(Self {
            allow_private,
            trusted_host: None,
        })
    }

    /// A resolver that also lets `host` resolve anywhere: a host the operator configured
    /// (`DOUYIN_UPSTREAM`), not one a third party named.
    pub(crate) fn trusting(allow_private: bool, host: Option<&str>) -> Arc<Self> {
        Arc::new(Self {
            allow_private,
            trusted_host: host.map(str::to_ascii_lowercase),
        })
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let allow_private = self.allow_private
            || self
                .trusted_host
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(&host));
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
            // IPv6 forms that embed a non-public IPv4 address.
            "::7f00:1",
            "::127.0.0.1",
            "::a9fe:a9fe",
            "::ffff:0:7f00:1",
            "64:ff9b::7f00:1",
            "64:ff9b::10.0.0.1",
            "64:ff9b:1::1.1.1.1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2001:0:7f00:1::1",
            "2001:0:4136:e378:8000:63bf:80ff:fffe", // Teredo client 127.0.0.1
            "fec0::1",
            "240.0.0.1",
            "198.18.0.1",
            "192.0.0.8",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "203.0.113.9",
            "2606:4700::1111",
            "100.128.0.1",
            "64:ff9b::1.1.1.1",
            "2002:0101:0101::1",
            "::ffff:1.1.1.1",
        ] {
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
        assert!(check("http://[::7f00:1]:8080/x", false).is_err());
        assert!(check("http://[64:ff9b::a9fe:a9fe]/latest/", false).is_err());
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
        // The operator's own host may be private; no other name may.
        let r = GuardedResolver::trusting(false, Some("LocalHost"));
        assert!(r.resolve("localhost".parse().unwrap()).await.is_ok());
        let r = GuardedResolver::trusting(false, Some("example.com"));
        assert!(r.resolve("localhost".parse().unwrap()).await.is_err());
    }
}
