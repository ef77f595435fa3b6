//! Links as users paste them, turned into an aweme id or a short link to resolve.
//!
//! Accepted forms:
//!
//! - the app's share text with a link inside (`7.43 复制打开抖音，看看【…】 https://v.douyin.com/iRNBho6u/ …`),
//!   the link possibly glued to the Chinese text around it;
//! - a URL with or without scheme on a Douyin host (`douyin.com`, `iesdouyin.com` and their
//!   subdomains, compared case-insensitively);
//! - short links `v.douyin.com/{code}` and `jx.douyin.com/{code}` (also `v.iesdouyin.com`),
//!   resolved by the caller with one GET without redirects, whose `Location` goes to
//!   `id_from_url`;
//! - page links with the id inside: `/video/{id}`, `/note/{id}`, `/slides/{id}`,
//!   `/share/(video|note|slides)/{id}`, `/m/video/{id}`, `?modal_id={id}`, `?vid={id}`;
//! - a bare aweme id: 8 to 25 ASCII digits, as in the SQL function `enqueue_download_job`.
//!
//! Everything else is refused with an [`UnsupportedLink`] naming what was wrong. Nothing here
//! does I/O, and no input makes it panic.

use serde_json::Value;
use url::Url;

/// What kind of post a link says it is (when it says).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PostKind {
    /// A video (`/video/{id}`).
    Video,
    /// A photo post (`/note/{id}`).
    Note,
    /// A slideshow (`/slides/{id}`).
    Slides,
}

/// A link, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// The aweme id is in the link itself.
    Id {
        /// The aweme id: 8 to 25 ASCII digits.
        aweme_id: String,
        /// The kind of post, when the link says.
        kind: Option<PostKind>,
    },
    /// A short link (v.douyin.com / jx.douyin.com / iesdouyin short forms): resolve it with
    /// one GET without following redirects and parse the Location with `id_from_url`.
    Short {
        /// The short link, normalised to `https://{host}/{code}/` (no port, query or fragment).
        url: Url,
    },
}

/// The reason a link was refused; Display is `unsupported link: <what was wrong>`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unsupported link: {0}")]
pub struct UnsupportedLink(pub String);

/// Shortest aweme id, in digits.
const ID_MIN: usize = 8;
/// Longest aweme id, in digits.
const ID_MAX: usize = 25;
/// Longest short-link code accepted.
const CODE_MAX: usize = 64;
/// Hosts whose single path segment is a short-link code.
const SHORT_HOSTS: [&str; 3] = ["v.douyin.com", "jx.douyin.com", "v.iesdouyin.com"];
/// Registrable domains a pasted link may point into (these and their subdomains); the wider
/// family of Douyin hosts that cookies may go to is [`crate::net::upstream::DOUYIN_DOMAINS`].
const LINK_DOMAINS: [&str; 2] = ["douyin.com", "iesdouyin.com"];
/// Payload keys that may carry a job's link, in order of preference.
const PAYLOAD_KEYS: [&str; 5] = ["url", "link", "video_url", "share_url", "share_text"];
/// What an id-carrying URL is expected to look like, for refusals.
const EXPECTED: &str =
    "expected /video/{id}, /note/{id}, /slides/{id}, ?modal_id={id} or ?vid={id}";

/// Finds the link in what a user pasted: share text with a URL inside, a URL (with or without
/// scheme), or a bare aweme id (digits, 8 to 25 of them, as in the SQL `enqueue_download_job`).
pub fn parse(input: &str) -> Result<Link, UnsupportedLink> {
    locate(input).map(|(link, _)| link)
}

/// [`parse`], and the URL it found in the text (with a scheme, without the text around it);
/// `None` for a bare aweme id. What `enqueue` records as the video's link.
pub(crate) fn locate(input: &str) -> Result<(Link, Option<Url>), UnsupportedLink> {
    let text = input.trim();
    if text.is_empty() {
        return Err(refuse("empty input"));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return if is_id(text) {
            Ok((
                Link::Id {
                    aweme_id: text.to_owned(),
                    kind: None,
                },
                None,
            ))
        } else {
            Err(refuse(format!(
                "{} is not a video id (expected {ID_MIN} to {ID_MAX} digits)",
                clip(text, 40)
            )))
        };
    }
    // The first candidate that is a usable Douyin link wins; otherwise the first candidate's
    // reason is the answer.
    let mut first_error = None;
    for candidate in candidates(text) {
        let result = match candidate {
            Candidate::Url(s) => Url::parse(&s)
                .map_err(|e| refuse(format!("{} is not a valid URL ({e})", clip(&s, 200))))
                .and_then(|url| classify(&url).map(|link| (link, Some(url)))),
            Candidate::BadScheme(scheme) => {
                Err(refuse(format!("scheme {scheme} is not http or https")))
            }
        };
        match result {
            Ok(link) => return Ok(link),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error
        .unwrap_or_else(|| refuse(format!("no Douyin link or id in \"{}\"", clip(text, 60)))))
}

/// The aweme id (and kind when known) in a full Douyin URL, e.g. the Location a short link
/// redirects to (`https://www.iesdouyin.com/share/video/7412345678901234567/?region=CN&...`).
pub(crate) fn id_from_url(url: &Url) -> Option<(String, Option<PostKind>)> {
    check_host(url).ok()?;
    find_id(url).ok()
}

/// The link of a job: the payload's link if it has one (keys `url`, `link`, `video_url`,
/// `share_url`, `share_text`, in that order, string values only), else the video row's
/// `video_url`, else its `douyin_id`. None when there is nothing.
///
/// Blank strings count as nothing; the link returned is trimmed.
pub(crate) fn job_link(
    payload: Option<&Value>,
    video_url: Option<&str>,
    douyin_id: Option<&str>,
) -> Option<String> {
    let from_payload = payload.and_then(Value::as_object).and_then(|object| {
        PAYLOAD_KEYS
            .iter()
            .find_map(|key| non_blank(object.get(*key)?.as_str()))
    });
    from_payload
        .or_else(|| non_blank(video_url))
        .or_else(|| non_blank(douyin_id))
        .map(str::to_owned)
}

/// A possible link found in pasted text.
enum Candidate {
    /// Text to parse as an http(s) URL.
    Url(String),
    /// A URL with another scheme (lowercased).
    BadScheme(String),
}

/// The possible links in `text`, in order: http(s) URLs anywhere in a token, other schemes,
/// and scheme-less tokens that start with a Douyin host.
fn candidates(text: &str) -> Vec<Candidate> {
    let mut found = Vec::new();
    // Tokens are runs of ASCII URL characters, so full-width punctuation and Chinese text
    // glued to a link end it, and byte slicing below stays on char boundaries.
    for token in text.split(|c: char| !is_url_char(c)) {
        let token = token
            .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
            .trim_end_matches(|c: char| ".,;:!?()[]*~'\"".contains(c));
        if token.is_empty() {
            continue;
        }
        let lower = token.to_ascii_lowercase();
        let http = [lower.find("https://"), lower.find("http://")]
            .into_iter()
            .flatten()
            .min();
        if let Some(start) = http {
            found.push(Candidate::Url(token[start..].to_owned()));
        } else if let Some(end) = lower.find("://") {
            let scheme_start = lower[..end]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+.-".contains(c)))
                .map_or(0, |i| i + 1);
            let scheme = &lower[scheme_start..end];
            if scheme.is_empty() {
                push_schemeless(&mut found, &token[end + 3..]);
            } else {
                found.push(Candidate::BadScheme(scheme.to_owned()));
            }
        } else {
            push_schemeless(&mut found, token);
        }
    }
    found
}

/// Adds `token` as `https://{token}` when it starts with a Douyin host.
fn push_schemeless(found: &mut Vec<Candidate>, token: &str) {
    let host = token.split(['/', '?', '#', ':']).next().unwrap_or_default();
    if !host.contains('@') && is_link_host(host) {
        found.push(Candidate::Url(format!("https://{token}")));
    }
}

/// Whether `c` may be part of a URL as pasted (ASCII, printable, not a delimiter).
fn is_url_char(c: char) -> bool {
    c.is_ascii_graphic() && !"\"<>\\^`{|}'".contains(c)
}

/// The link a full URL stands for: a short link, or the id inside.
fn classify(url: &Url) -> Result<Link, UnsupportedLink> {
    let host = check_host(url)?;
    if SHORT_HOSTS.contains(&host.as_str()) {
        return short_link(url, &host);
    }
    find_id(url)
        .map(|(aweme_id, kind)| Link::Id { aweme_id, kind })
        .map_err(refuse)
}

/// Checks the scheme and host of `url`; returns the host, lowercased, without a trailing dot.
fn check_host(url: &Url) -> Result<String, UnsupportedLink> {
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(refuse(format!("scheme {other} is not http or https"))),
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(refuse(format!("no host in {}", shown(url))));
    };
    if !is_link_host(host) {
        return Err(refuse(format!("host {host} is not a Douyin host")));
    }
    Ok(normalize_host(host))
}

/// A short link: one code segment, else an id in the path, else refused.
fn short_link(url: &Url, host: &str) -> Result<Link, UnsupportedLink> {
    match segments(url).as_slice() {
        [] => Err(refuse("short link without a code")),
        [code] if is_code(code) => {
            let normal = format!("https://{host}/{code}/");
            Url::parse(&normal)
                .map(|url| Link::Short { url })
                .map_err(|e| refuse(format!("{normal} is not a valid URL ({e})")))
        }
        [code] => Err(refuse(format!(
            "short link code \"{}\" is not valid (expected letters, digits, _ and -)",
            clip(code, 60)
        ))),
        _ => find_id(url)
            .map(|(aweme_id, kind)| Link::Id { aweme_id, kind })
            .map_err(|_| {
                refuse(format!(
                    "short link {} has more than a code in its path",
                    shown(url)
                ))
            }),
    }
}

/// The id in the path or query of `url` (host not checked), or what was wrong.
///
/// A `(video|note|slides)/{id}` path (at the start, or after `share/` or `m/`) wins; else the
/// first of `modal_id` and `vid` whose value is an id.
fn find_id(url: &Url) -> Result<(String, Option<PostKind>), String> {
    let segs = segments(url);
    let kind_at = match segs.as_slice() {
        [first, ..] if kind_of(first).is_some() => Some(0),
        [first, second, ..]
            if ["share", "m"].iter().any(|p| first.eq_ignore_ascii_case(p))
                && kind_of(second).is_some() =>
        {
            Some(1)
        }
        _ => None,
    };
    if let Some(i) = kind_at {
        let word = segs[i];
        let kind = kind_of(word);
        return match segs.get(i + 1) {
            Some(id) if is_id(id) => Ok(((*id).to_owned(), kind)),
            Some(other) => Err(format!(
                "expected a video id ({ID_MIN} to {ID_MAX} digits) after /{word}/, found \"{}\" in {}",
                clip(other, 40),
                shown(url)
            )),
            None => Err(format!("no video id after /{word}/ in {}", shown(url))),
        };
    }
    let mut bad = None;
    for key in ["modal_id", "vid"] {
        for (k, value) in url.query_pairs() {
            if k != key {
                continue;
            }
            let value = value.trim();
            if is_id(value) {
                return Ok((value.to_owned(), None));
            }
            bad.get_or_insert_with(|| {
                format!(
                    "{key}={} is not a video id (expected {ID_MIN} to {ID_MAX} digits) in {}",
                    clip(value, 40),
                    shown(url)
                )
            });
        }
    }
    Err(bad.unwrap_or_else(|| format!("no video id in {} ({EXPECTED})", shown(url))))
}

/// The kind a path word names.
fn kind_of(word: &str) -> Option<PostKind> {
    [
        ("video", PostKind::Video),
        ("note", PostKind::Note),
        ("slides", PostKind::Slides),
    ]
    .into_iter()
    .find(|(name, _)| word.eq_ignore_ascii_case(name))
    .map(|(_, kind)| kind)
}

/// The non-empty path segments of `url`.
fn segments(url: &Url) -> Vec<&str> {
    url.path_segments()
        .map(|segments| segments.filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

/// Whether `s` is an aweme id: 8 to 25 ASCII digits.
fn is_id(s: &str) -> bool {
    (ID_MIN..=ID_MAX).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `s` is a short-link code: `[A-Za-z0-9_-]+`, at most [`CODE_MAX`] long.
fn is_code(s: &str) -> bool {
    (1..=CODE_MAX).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A host lowercased, without trailing dots.
fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `host` is `douyin.com`, `iesdouyin.com` or a subdomain of either.
fn is_link_host(host: &str) -> bool {
    let host = normalize_host(host);
    host.split('.').all(|label| !label.is_empty())
        && LINK_DOMAINS.iter().any(|domain| {
            host == *domain
                || host
                    .strip_suffix(domain)
                    .is_some_and(|rest| rest.ends_with('.'))
        })
}

/// `s` trimmed, unless blank.
fn non_blank(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// A URL for messages, clipped.
fn shown(url: &Url) -> String {
    clip(url.as_str(), 200)
}

/// The first `max` characters of `s` on one line (whitespace and control characters become
/// single spaces), with `…` when something was cut.
fn clip(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut last_space = false;
    for c in s.chars() {
        if count == max {
            out.push('…');
            break;
        }
        let space = c.is_whitespace() || c.is_control();
        if space && last_space {
            continue;
        }
        out.push(if space { ' ' } else { c });
        last_space = space;
        count += 1;
    }
    out
}

/// An [`UnsupportedLink`] with this reason.
fn refuse(reason: impl Into<String>) -> UnsupportedLink {
    UnsupportedLink(reason.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "7412345678901234567";

    fn id(kind: Option<PostKind>) -> Link {
        Link::Id {
            aweme_id: ID.to_owned(),
            kind,
        }
    }

    fn short(url: &str) -> Link {
        Link::Short {
            url: Url::parse(url).unwrap(),
        }
    }

    fn err(input: &str) -> String {
        match parse(input) {
            Err(e) => e.to_string(),
            Ok(link) => panic!("{input:?} parsed as {link:?}"),
        }
    }

    #[test]
    fn locate_gives_the_link_without_the_text_pasted_around_it() {
        let page = "https://www.douyin.com/video/7412345678901234567";
        for input in [
            "https://www.douyin.com/video/7412345678901234567 这是一个很棒的视频",
            "https://www.douyin.com/video/7412345678901234567, great video",
            "https://www.douyin.com/video/7412345678901234567\u{200B}很棒",
            "看看 www.douyin.com/video/7412345678901234567 ！",
        ] {
            let (link, url) = locate(input).unwrap();
            assert_eq!(link, id(Some(PostKind::Video)), "{input:?}");
            assert_eq!(url.map(String::from).as_deref(), Some(page), "{input:?}");
        }
        let (link, url) = locate("7.43 复制 https://v.douyin.com/iRNBho6u/ 打开").unwrap();
        assert_eq!(link, short("https://v.douyin.com/iRNBho6u/"));
        assert_eq!(url.unwrap().as_str(), "https://v.douyin.com/iRNBho6u/");
        assert_eq!(locate(ID).unwrap(), (id(None), None));
    }

    #[test]
    fn share_text() {
        let text = "7.43 复制打开抖音，看看【某某的作品】在这里看到你 # 旅行 https://v.douyin.com/iRNBho6u/ 12/25 x@A.Gv vSy:/";
        assert_eq!(parse(text), Ok(short("https://v.douyin.com/iRNBho6u/")));
        let glued =
            "看看【作品】https://v.douyin.com/iRNBho6u/复制此链接，打开Dou音搜索，直接观看视频！";
        assert_eq!(parse(glued), Ok(short("https://v.douyin.com/iRNBho6u/")));
        let emoji = "😀🎉 @某人 #美食 https://v.douyin.com/a_B-9z/，。】！  ";
        assert_eq!(parse(emoji), Ok(short("https://v.douyin.com/a_B-9z/")));
        let no_scheme = "复制打开抖音 v.douyin.com/iRNBho6u/ 看看";
        assert_eq!(
            parse(no_scheme),
            Ok(short("https://v.douyin.com/iRNBho6u/"))
        );
        let page = "看看这个：https://www.douyin.com/video/7412345678901234567。好看！";
        assert_eq!(parse(page), Ok(id(Some(PostKind::Video))));
        let punct = "(https://v.douyin.com/iRNBho6u).";
        assert_eq!(parse(punct), Ok(short("https://v.douyin.com/iRNBho6u/")));
    }

    #[test]
    fn first_douyin_url_wins_over_other_hosts() {
        let text = "see https://example.com/a then https://v.douyin.com/abc123/";
        assert_eq!(parse(text), Ok(short("https://v.douyin.com/abc123/")));
        assert_eq!(
            err("see https://example.com/a and https://example.org/b"),
            "unsupported link: host example.com is not a Douyin host"
        );
    }

    #[test]
    fn short_links() {
        for (input, want) in [
            (
                "https://v.douyin.com/iRNBho6u/",
                "https://v.douyin.com/iRNBho6u/",
            ),
            (
                "https://v.douyin.com/iRNBho6u",
                "https://v.douyin.com/iRNBho6u/",
            ),
            (
                "http://v.douyin.com/iRNBho6u/",
                "https://v.douyin.com/iRNBho6u/",
            ),
            (
                "HTTPS://V.DOUYIN.COM/iRNBho6u/",
                "https://v.douyin.com/iRNBho6u/",
            ),
            (
                "https://v.douyin.com./x_y-z/?from=share#top",
                "https://v.douyin.com/x_y-z/",
            ),
            (
                "https://jx.douyin.com/Ab-9_c/",
                "https://jx.douyin.com/Ab-9_c/",
            ),
            ("jx.douyin.com/Ab-9_c", "https://jx.douyin.com/Ab-9_c/"),
            (
                "https://v.iesdouyin.com/abc/",
                "https://v.iesdouyin.com/abc/",
            ),
        ] {
            assert_eq!(parse(input), Ok(short(want)), "{input:?}");
        }
        for input in [
            "https://v.douyin.com",
            "https://v.douyin.com/",
            "v.douyin.com//",
        ] {
            assert_eq!(
                err(input),
                "unsupported link: short link without a code",
                "{input:?}"
            );
        }
        assert!(err("https://v.douyin.com/a.b/").contains("short link code \"a.b\""));
        assert!(err("https://v.douyin.com/a/b/").contains("more than a code"));
        // A short host with an id path is taken for its id.
        assert_eq!(
            parse("https://v.douyin.com/video/7412345678901234567"),
            Ok(id(Some(PostKind::Video)))
        );
    }

    #[test]
    fn iesdouyin_share_is_not_short() {
        for input in [
            "https://www.iesdouyin.com/share/video/7412345678901234567/?region=CN&mid=1",
            "https://www.iesdouyin.com/share/video/7412345678901234567",
            "https://www.iesdouyin.com/share/video/7412345678901234567/",
        ] {
            assert_eq!(parse(input), Ok(id(Some(PostKind::Video))), "{input:?}");
        }
        assert_eq!(
            parse("https://www.iesdouyin.com/share/note/7412345678901234567/"),
            Ok(id(Some(PostKind::Note)))
        );
        assert_eq!(
            parse("https://www.iesdouyin.com/share/slides/7412345678901234567?x=1"),
            Ok(id(Some(PostKind::Slides)))
        );
    }

    #[test]
    fn page_links() {
        let video = Some(PostKind::Video);
        for (input, kind) in [
            ("https://www.douyin.com/video/7412345678901234567", video),
            (
                "www.douyin.com/video/7412345678901234567?previous_page=app",
                video,
            ),
            ("douyin.com/video/7412345678901234567/", video),
            (
                "https://www.douyin.com/note/7412345678901234567",
                Some(PostKind::Note),
            ),
            (
                "https://www.douyin.com/slides/7412345678901234567",
                Some(PostKind::Slides),
            ),
            (
                "https://m.douyin.com/share/video/7412345678901234567/",
                video,
            ),
            (
                "https://m.douyin.com/share/note/7412345678901234567",
                Some(PostKind::Note),
            ),
            (
                "https://m.douyin.com/share/slides/7412345678901234567",
                Some(PostKind::Slides),
            ),
            (
                "https://jingxuan.douyin.com/m/video/7412345678901234567?app=aweme",
                video,
            ),
            (
                "https://www.douyin.com/discover?modal_id=7412345678901234567",
                None,
            ),
            (
                "https://www.douyin.com/user/MS4wLjABAAAA?from_tab_name=main&modal_id=7412345678901234567",
                None,
            ),
            (
                "https://www.douyin.com/jingxuan?modal_id=7412345678901234567",
                None,
            ),
            ("https://www.douyin.com/?vid=7412345678901234567", None),
            (
                "https://www.douyin.com/search/cat?modal_id=&vid=7412345678901234567",
                None,
            ),
            ("https://WWW.DouYin.com/video/7412345678901234567", video),
            // The path id wins over the query.
            (
                "https://www.douyin.com/video/7412345678901234567?modal_id=7999999999999999999",
                video,
            ),
        ] {
            assert_eq!(parse(input), Ok(id(kind)), "{input:?}");
        }
    }

    #[test]
    fn refused_ids_say_what_was_expected() {
        let user = err("https://www.douyin.com/user/MS4wLjABAAAA");
        assert!(
            user.starts_with(
                "unsupported link: no video id in https://www.douyin.com/user/MS4wLjABAAAA ("
            ),
            "{user}"
        );
        assert!(user.contains("/video/{id}"), "{user}");
        let bad = err("https://www.douyin.com/video/abc123");
        assert!(
            bad.contains("expected a video id (8 to 25 digits) after /video/, found \"abc123\""),
            "{bad}"
        );
        assert!(err("douyin.com/video/").contains("no video id after /video/"));
        assert!(err("https://www.douyin.com/video/1234567").contains("found \"1234567\""));
        assert!(
            err("https://www.douyin.com/?modal_id=12x").contains("modal_id=12x is not a video id")
        );
        assert!(err("https://www.iesdouyin.com/share/user/MS4w").contains("no video id in"));
    }

    #[test]
    fn hosts() {
        for (input, host) in [
            (
                "https://example.com/video/7412345678901234567",
                "example.com",
            ),
            (
                "https://evildouyin.com/video/7412345678901234567",
                "evildouyin.com",
            ),
            (
                "https://douyin.com.evil.net/video/7412345678901234567",
                "douyin.com.evil.net",
            ),
            ("https://v.douyin.com@evil.net/abc/", "evil.net"),
            ("https://127.0.0.1/video/7412345678901234567", "127.0.0.1"),
        ] {
            assert_eq!(
                err(input),
                format!("unsupported link: host {host} is not a Douyin host"),
                "{input:?}"
            );
        }
        assert_eq!(
            parse("https://user@www.douyin.com/video/7412345678901234567"),
            Ok(id(Some(PostKind::Video)))
        );
        assert_eq!(
            err("ftp://v.douyin.com/abc/"),
            "unsupported link: scheme ftp is not http or https"
        );
        assert_eq!(
            err("snssdk1128://aweme/detail/7412345678901234567"),
            "unsupported link: scheme snssdk1128 is not http or https"
        );
        assert!(err("https://").starts_with("unsupported link: https:// is not a valid URL"));
    }

    #[test]
    fn bare_ids() {
        assert_eq!(parse(ID), Ok(id(None)));
        assert_eq!(parse("  7412345678901234567 \n"), Ok(id(None)));
        assert_eq!(parse("12345678"), Ok(id_of("12345678")));
        assert_eq!(parse(&"9".repeat(25)), Ok(id_of(&"9".repeat(25))));
        assert_eq!(
            err("0"),
            "unsupported link: 0 is not a video id (expected 8 to 25 digits)"
        );
        assert!(err("1234567").contains("is not a video id"));
        assert!(err(&"1".repeat(26)).contains("is not a video id"));
        // Full-width digits are not ASCII digits.
        assert!(err("７４１２３４５６７８").contains("no Douyin link or id"));
    }

    fn id_of(s: &str) -> Link {
        Link::Id {
            aweme_id: s.to_owned(),
            kind: None,
        }
    }

    #[test]
    fn empty_and_unrecognised() {
        assert_eq!(err(""), "unsupported link: empty input");
        assert_eq!(err(" \t\n　"), "unsupported link: empty input");
        assert_eq!(
            err("hello world"),
            "unsupported link: no Douyin link or id in \"hello world\""
        );
        let long = format!("{}\n{}", "字".repeat(50), "x".repeat(100));
        let message = err(&long);
        assert_eq!(
            message,
            format!(
                "unsupported link: no Douyin link or id in \"{} {}…\"",
                "字".repeat(50),
                "x".repeat(9)
            )
        );
    }

    #[test]
    fn id_from_locations() {
        let location = Url::parse(
            "https://www.iesdouyin.com/share/video/7412345678901234567/?region=CN&mid=7&u_code=0&did=MS4w&from_ssr=1",
        )
        .unwrap();
        assert_eq!(
            id_from_url(&location),
            Some((ID.to_owned(), Some(PostKind::Video)))
        );
        let note = Url::parse("https://www.iesdouyin.com/share/note/7412345678901234567/").unwrap();
        assert_eq!(
            id_from_url(&note),
            Some((ID.to_owned(), Some(PostKind::Note)))
        );
        let modal =
            Url::parse("https://www.douyin.com/discover?modal_id=7412345678901234567").unwrap();
        assert_eq!(id_from_url(&modal), Some((ID.to_owned(), None)));
        for other in [
            "https://www.iesdouyin.com/share/user/MS4wLjABAAAA?sec_uid=x",
            "https://example.com/video/7412345678901234567",
            "https://v.douyin.com/iRNBho6u/",
            "ftp://www.douyin.com/video/7412345678901234567",
        ] {
            assert_eq!(id_from_url(&Url::parse(other).unwrap()), None, "{other:?}");
        }
    }

    #[test]
    fn job_links() {
        let payload =
            json!({"link": 5, "video_url": " https://v.douyin.com/a/ ", "share_text": "x"});
        assert_eq!(
            job_link(Some(&payload), Some("row"), Some(ID)).as_deref(),
            Some("https://v.douyin.com/a/")
        );
        let ordered = json!({"share_text": "s", "share_url": "u", "url": "first"});
        assert_eq!(
            job_link(Some(&ordered), None, None).as_deref(),
            Some("first")
        );
        let blank = json!({"url": "  ", "link": null});
        assert_eq!(
            job_link(Some(&blank), Some("row"), Some(ID)).as_deref(),
            Some("row")
        );
        assert_eq!(
            job_link(Some(&json!([1])), None, Some(ID)).as_deref(),
            Some(ID)
        );
        assert_eq!(job_link(None, Some(" "), Some(ID)).as_deref(), Some(ID));
        assert_eq!(job_link(Some(&json!({})), None, None), None);
        assert_eq!(job_link(None, None, Some("")), None);
    }

    #[test]
    fn post_kind_serializes_snake_case() {
        assert_eq!(
            serde_json::to_string(&PostKind::Slides).unwrap(),
            "\"slides\""
        );
        assert_eq!(
            serde_json::to_string(&PostKind::Video).unwrap(),
            "\"video\""
        );
    }

    #[test]
    fn never_panics() {
        let long_digits = "1".repeat(100_000);
        let long_url = format!("https://www.douyin.com/video/{}", "9".repeat(10_000));
        let long_text = "复制打开抖音".repeat(20_000);
        let long_code = format!("https://v.douyin.com/{}/", "a".repeat(10_000));
        let many = "https://example.com ".repeat(5_000);
        let weird = [
            "",
            " ",
            "\0",
            "\u{feff}",
            "🦀",
            "【】",
            "，。】！",
            "://",
            "https://",
            "http://",
            "https:///",
            "http://v.douyin.com",
            "douyin.com",
            "douyin.com/video/",
            ".douyin.com",
            "..douyin.com/x",
            "v..douyin.com/abc",
            "https://[::1]/video/1",
            "https://[",
            "http://v.douyin.com:99999/abc",
            "https://v.douyin.com/%ZZ/",
            "a://b://c",
            "https://https://v.douyin.com/x/",
            "?modal_id=",
            "&vid=",
            "modal_id=7412345678901234567",
            "https://www.douyin.com/?modal_id=%F0%9F%A6%80",
            "javascript:alert(1)",
            "data:text/html,hi",
            "mailto:a@douyin.com",
            "@douyin.com",
            "x@v.douyin.com/abc",
            "https://www.douyin.com/video/７４１２３４５６７８",
            "\u{202e}https://v.douyin.com/x/",
            "https://v.douyin.com/\u{301c}",
            "v.douyin.com",
            "jx.douyin.com/",
            "12345678 87654321",
            &long_digits,
            &long_url,
            &long_text,
            &long_code,
            &many,
        ];
        for input in weird {
            let _ = parse(input);
            let _ = job_link(Some(&json!({ "url": input })), Some(input), Some(input));
            if let Ok(url) = Url::parse(input) {
                let _ = id_from_url(&url);
            }
            // Every prefix on a char boundary, too.
            if input.len() < 200 {
                for (i, _) in input.char_indices() {
                    let _ = parse(&input[..i]);
                }
            }
        }
        assert!(err(&long_url).len() < 600);
        assert!(err(&long_digits).len() < 200);
    }
}
