//! The `reflow_id` of the H5 item-info API: the share page's `xsstoken`, encrypted with
//! AES-128-CBC (key = IV = the first 16 bytes of the page's `webId`, PKCS#7 padding),
//! base64-encoded. Pure functions; the fixture server in the tests decrypts with
//! [`decrypt`] to check what the worker sent.

use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
use base64::Engine;

type Enc = cbc::Encryptor<aes::Aes128>;
type Dec = cbc::Decryptor<aes::Aes128>;

/// Why a reflow id could not be made or read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReflowError {
    /// The webId is shorter than the 16 bytes the key needs.
    #[error("webId {0:?} is shorter than 16 bytes")]
    ShortWebId(String),
    /// The reflow id is not base64 of a padded AES block sequence.
    #[error("reflow_id is not a valid encrypted token")]
    Invalid,
}

fn key(web_id: &str) -> Result<[u8; 16], ReflowError> {
    web_id
        .as_bytes()
        .get(..16)
        .and_then(|k| <[u8; 16]>::try_from(k).ok())
        .ok_or_else(|| ReflowError::ShortWebId(web_id.to_string()))
}

/// `base64(AES-128-CBC(key = IV = webId[..16], PKCS#7, xsstoken))`.
pub fn reflow_id(xsstoken: &str, web_id: &str) -> Result<String, ReflowError> {
    let k = key(web_id)?;
    let ct = Enc::new(&k.into(), &k.into()).encrypt_padded_vec::<Pkcs7>(xsstoken.as_bytes());
    Ok(base64::engine::general_purpose::STANDARD.encode(ct))
}

/// The `xsstoken` inside a reflow id made with the same `webId`.
pub fn decrypt(reflow_id: &str, web_id: &str) -> Result<String, ReflowError> {
    let k = key(web_id)?;
    let ct = base64::engine::general_purpose::STANDARD
        .decode(reflow_id.trim())
        .map_err(|_| ReflowError::Invalid)?;
    let pt = Dec::new(&k.into(), &k.into())
        .decrypt_padded_vec::<Pkcs7>(&ct)
        .map_err(|_| ReflowError::Invalid)?;
    String::from_utf8(pt).map_err(|_| ReflowError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_test_vector() {
        assert_eq!(
            reflow_id("deployment-owned-token", "7687279813539268146").unwrap(),
            "X8NCQVYkntJfw5URyA+fE4FLWq2AWWzLErM+YZEWRWM="
        );
    }

    #[test]
    fn round_trips_and_refuses_bad_input() {
        let id = reflow_id("tok-ö-123", "1234567890123456789").unwrap();
        assert_eq!(decrypt(&id, "1234567890123456789").unwrap(), "tok-ö-123");
        assert_eq!(
            reflow_id("x", "123"),
            Err(ReflowError::ShortWebId("123".into()))
        );
        assert_eq!(
            decrypt("not base64!", "1234567890123456789"),
            Err(ReflowError::Invalid)
        );
        assert!(decrypt(&id, "9999999999999999999").is_err());
    }
}
