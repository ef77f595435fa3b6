//! `Range` requests on the proxied file (`?proxy=true`), so a `<video>` element can seek.
//!
//! One range (`bytes=a-b`, `bytes=a-`, `bytes=-n`) is served as 206 with `Content-Range`;
//! a range that starts past the end answers 416 with `Content-Range: bytes */SIZE`. Anything
//! else (several ranges, another unit, a malformed header) is ignored and the whole file is
//! served with 200, as RFC 9110 §14.2 allows.

/// What to serve of an object of known size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ranged {
    /// The whole object (no `Range`, or one this server ignores).
    Whole,
    /// Bytes `start..=end`.
    Part {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// A range that selects nothing of the object.
    Unsatisfiable,
}

/// What `header` (the `Range` value) asks of an object of `size` bytes.
pub(crate) fn resolve(header: Option<&str>, size: u64) -> Ranged {
    let Some(spec) = header.map(str::trim).and_then(|h| h.strip_prefix("bytes=")) else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-n: the last n bytes.
        (true, false) => match number(last) {
            Some(0) => Ranged::Unsatisfiable,
            Some(_) if size == 0 => Ranged::Unsatisfiable,
            Some(n) => Ranged::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
            None => Ranged::Whole,
        },
        // bytes=a-: from a to the end.
        (false, true) => match number(first) {
            Some(a) if a >= size => Ranged::Unsatisfiable,
            Some(a) => Ranged::Part {
                start: a,
                end: size - 1,
            },
            None => Ranged::Whole,
        },
        // bytes=a-b.
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a > b => Ranged::Whole,
            (Some(a), Some(_)) if a >= size => Ranged::Unsatisfiable,
            (Some(a), Some(b)) => Ranged::Part {
                start: a,
                end: b.min(size - 1),
            },
            _ => Ranged::Whole,
        },
        (true, true) => Ranged::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: u64, end: u64) -> Ranged {
        Ranged::Part { start, end }
    }

    #[test]
    fn single_ranges_of_every_form() {
        assert_eq!(resolve(Some("bytes=0-99"), 1000), part(0, 99));
        assert_eq!(resolve(Some("bytes=900-"), 1000), part(900, 999));
        assert_eq!(resolve(Some("bytes=-100"), 1000), part(900, 999));
        assert_eq!(resolve(Some("bytes=990-2000"), 1000), part(990, 999));
        assert_eq!(resolve(Some("bytes=-5000"), 1000), part(0, 999));
        assert_eq!(resolve(Some(" bytes=5-5 "), 1000), part(5, 5));
    }

    #[test]
    fn ranges_past_the_end_are_unsatisfiable() {
        assert_eq!(resolve(Some("bytes=1000-"), 1000), Ranged::Unsatisfiable);
        assert_eq!(
            resolve(Some("bytes=1000-1200"), 1000),
            Ranged::Unsatisfiable
        );
        assert_eq!(resolve(Some("bytes=-0"), 1000), Ranged::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=0-"), 0), Ranged::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=-10"), 0), Ranged::Unsatisfiable);
    }

    #[test]
    fn other_headers_get_the_whole_file() {
        for h in [
            None,
            Some("bytes=0-1,5-6"),
            Some("items=0-1"),
            Some("bytes=abc"),
            Some("bytes=5-1"),
            Some("bytes=-"),
            Some("bytes=+1-2"),
            Some("bytes=99999999999999999999999-"),
        ] {
            assert_eq!(resolve(h, 1000), Ranged::Whole, "{h:?}");
        }
    }
}
