//! Sizes in bytes for settings such as `MIN_FREE_DISK`: a whole number of bytes, or one with
//! a binary unit (`512M`, `2G`, `1T`); whole numbers only.

use super::ConfigError;
use super::field::Field;

/// What a size setting accepts, for its error message.
const EXPECTED: &str = "expected a size: a whole number of bytes, or with a unit K, M, G or T (powers of 1024: 512M, 2G, 1T)";

/// `1073741824`, `1G`, `1GiB`, `1gb`, `512M`, `0`: bytes (units are powers of 1024).
pub(crate) fn parse_bytes(raw: &str) -> Option<u64> {
    let text = raw.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let n: u64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

impl Field<'_> {
    /// A size in bytes ([`parse_bytes`]): the value given, else the declared default.
    pub fn bytes(&self) -> Result<u64, ConfigError> {
        let raw = self
            .present()
            .ok_or_else(|| self.fail("a value is needed"))?;
        parse_bytes(raw).ok_or_else(|| self.fail(EXPECTED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units_and_refuse_the_rest() {
        assert_eq!(parse_bytes("0"), Some(0));
        assert_eq!(parse_bytes("1048576"), Some(1 << 20));
        assert_eq!(parse_bytes("512M"), Some(512 << 20));
        assert_eq!(parse_bytes("1G"), Some(1 << 30));
        assert_eq!(parse_bytes("2GiB"), Some(2 << 30));
        assert_eq!(parse_bytes("3 gb"), Some(3 << 30));
        assert_eq!(parse_bytes("1000T"), Some(1000 << 40));
        assert_eq!(parse_bytes("4k"), Some(4096));
        for bad in ["", "G", "1.5G", "-1G", "1P", "1 G B", "ten", "99999999999T"] {
            assert_eq!(parse_bytes(bad), None, "{bad:?}");
        }
    }
}
