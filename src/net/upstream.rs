//! Douyin's hosts, and the `DOUYIN_UPSTREAM` testing aid.
//!
//! Cookies (`DOUYIN_COOKIE`) go only to Douyin-family hosts. With `DOUYIN_UPSTREAM` set to
//! `http://127.0.0.1:PORT` (tests, demos, offline checks), every request to a Douyin-family
//! host is sent to `{DOUYIN_UPSTREAM}/{host}{path}?{query}` instead, so real-looking links
//! reach a local fixture server. It is a testing aid, not a proxy: use `HTTPS_PROXY` for that.

use url::Url;

/// Registrable domains whose hosts (and subdomains) are Douyin's.
pub(crate) const DOUYIN_DOMAINS: &[&str] = &[
    "douyin.com",
    "iesdouyin.com",
    "douyinvod.com",
    "zjcdn.com",
    "snssdk.com",
    "amemv.com",
    "douyinpic.com",
    "douyinstatic.com",
    "bytedance.com",
];

/// Whether `host` is one of [`DOUYIN_DOMAINS`] or a subdomain of one.
pub(crate) fn is_douyin_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    DOUYIN_DOMAINS.iter().any(|d| {
        host == *d
            || host
                .strip_suffix(d)
                .is_some_and(|prefix| prefix.ends_with('.'))
    })
}

/// Where requests to Douyin go: to Douyin, or to a local stand-in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Upstream {
    base: Option<Url>,
}

impl Upstream {
    /// Requests go to Douyin itself.
    pub fn direct() -> Self {
        Self { base: None }
    }

    /// Direct, or to the stand-in `DOUYIN_UPSTREAM` names.
    pub(crate) fn from_setting(base: Option<&Url>) -> Self {
        Self {
            base: base.cloned(),
        }
    }

    /// Requests to Douyin hosts go to `base` (`DOUYIN_UPSTREAM`).
    pub fn rewrite_to(base: Url) -> Self {
        Self { base: Some(base) }
    }

    /// The URL to request for `url`.
    pub fn apply(&self, url: &Url) -> Url {
        let Some(base) = &self.base else {
            return url.clone();
        };
        let Some(host) = url.host_str().filter(|h| is_douyin_host(h)) else {
            return url.clone();
        };
        let mut out = base.clone();
        let prefix = base.path().trim_end_matches('/');
        out.set_path(&format!("{prefix}/{host}{}", url.path()));
        out.set_query(url.query());
        out
    }

    /// Whether `url` goes to the stand-in the operator configured (`DOUYIN_UPSTREAM`): such a
    /// request is trusted, wherever the stand-in listens; any other one passes the
    /// public-address guard.
    pub fn serves(&self, url: &Url) -> bool {
        self.base
            .as_ref()
            .is_some_and(|base| base.origin() == url.origin())
    }

    /// The stand-in's host name, if a rewrite is in effect.
    pub fn host(&self) -> Option<&str> {
        self.base.as_ref().and_then(Url::host_str)
    }

    /// The Douyin URL a rewritten URL stands for (for a redirect's `Location` from the
    /// stand-in); other URLs are returned as they are.
    pub fn original(&self, url: &Url) -> Url {
        let Some(base) = &self.base else {
            return url.clone();
        };
        if url.origin() != base.origin() {
            return url.clone();
        }
        let prefix = base.path().trim_end_matches('/');
        let rest = url.path().strip_prefix(prefix).unwrap_or(url.path());
        let rest = rest.trim_start_matches('/');
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !is_douyin_host(host) {
            return url.clone();
        }
        let mut original = match Url::parse(&format!("https://{host}/{path}")) {
            Ok(u) => u,
            Err(_) => return url.clone(),
        };
        original.set_query(url.query());
        original
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn douyin_family_hosts() {
        for h in [
            "douyin.com",
            "www.douyin.com",
            "v.douyin.com",
            "www.iesdouyin.com",
            "v26-web.douyinvod.com",
            "p3-sign.douyinpic.com",
            "api3-normal-c.amemv.com",
            "WWW.DOUYIN.COM",
            "lf-cdn-tos.bytescm.com.bytedance.com",
        ] {
            assert!(is_douyin_host(h), "{h}");
        }
        for h in [
            "notdouyin.com",
            "douyin.com.evil.org",
            "example.com",
            "127.0.0.1",
        ] {
            assert!(!is_douyin_host(h), "{h}");
        }
    }

    #[test]
    fn rewrites_only_douyin_hosts_and_maps_back() {
        let up = Upstream::rewrite_to(Url::parse("http://127.0.0.1:9000").unwrap());
        let u = Url::parse("https://www.iesdouyin.com/share/video/123/?region=CN&x=1").unwrap();
        let r = up.apply(&u);
        assert_eq!(
            r.as_str(),
            "http://127.0.0.1:9000/www.iesdouyin.com/share/video/123/?region=CN&x=1"
        );
        assert_eq!(up.original(&r), u);
        let other = Url::parse("https://example.com/a").unwrap();
        assert_eq!(up.apply(&other), other);
        assert_eq!(Upstream::direct().apply(&u), u);
        let prefixed = Upstream::rewrite_to(Url::parse("http://127.0.0.1:9000/fx/").unwrap());
        let r = prefixed.apply(&u);
        assert_eq!(
            r.as_str(),
            "http://127.0.0.1:9000/fx/www.iesdouyin.com/share/video/123/?region=CN&x=1"
        );
        assert_eq!(prefixed.original(&r), u);
    }
}
