//! Supabase API keys: what kind a key is, read without verifying it.
//!
//! The worker treats the service key as opaque: it sends it in `apikey` and
//! `Authorization: Bearer` and lets Supabase decide. Legacy keys are HS256 JWTs whose `role`
//! claim says what they are (`service_role`, `anon`); new keys are `sb_secret_…` (secret,
//! server-side) and `sb_publishable_…` (public). Only a key that is recognisably not a
//! service key is refused, so a mistake shows at start-up instead of as "permission denied"
//! on every call.

use base64::Engine;

/// What a key is, as far as can be told without the project's secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// A legacy JWT with `role: service_role`.
    ServiceRoleJwt,
    /// A new secret key (`sb_secret_…`).
    Secret,
    /// A legacy JWT with another role (e.g. `anon`).
    OtherRoleJwt(String),
    /// A new publishable key (`sb_publishable_…`), meant for browsers.
    Publishable,
    /// Anything else: passed on as it is.
    Opaque,
}

/// Reads the kind of `key`.
pub(crate) fn key_kind(key: &str) -> KeyKind {
    let key = key.trim();
    if key.starts_with("sb_secret_") {
        return KeyKind::Secret;
    }
    if key.starts_with("sb_publishable_") {
        return KeyKind::Publishable;
    }
    let mut parts = key.split('.');
    let (Some(_header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return KeyKind::Opaque;
    };
    let Ok(bytes) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('='))
    else {
        return KeyKind::Opaque;
    };
    let Ok(claims) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return KeyKind::Opaque;
    };
    match claims.get("role").and_then(|r| r.as_str()) {
        Some("service_role") => KeyKind::ServiceRoleJwt,
        Some(role) => KeyKind::OtherRoleJwt(role.to_string()),
        None => KeyKind::Opaque,
    }
}

/// Refuses a key that is recognisably not a service key; the message says what to use.
pub(crate) fn check_service_key(key: &str) -> Result<KeyKind, String> {
    match key_kind(key) {
        KeyKind::OtherRoleJwt(role) => Err(format!(
            "this is the `{role}` key, not the service role key: use the `service_role` key \
             (Supabase dashboard → Project Settings → API Keys)"
        )),
        KeyKind::Publishable => Err(
            "this is a publishable key (sb_publishable_…), meant for browsers: use a secret \
             key (sb_secret_…) or the legacy service_role key"
                .into(),
        ),
        kind => Ok(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.c2ln", b(r#"{"alg":"HS256","typ":"JWT"}"#), b(claims))
    }

    #[test]
    fn kinds() {
        assert_eq!(
            key_kind(&jwt(r#"{"iss":"supabase","role":"service_role"}"#)),
            KeyKind::ServiceRoleJwt
        );
        assert_eq!(
            key_kind(&jwt(r#"{"role":"anon"}"#)),
            KeyKind::OtherRoleJwt("anon".into())
        );
        assert_eq!(key_kind("sb_secret_abc"), KeyKind::Secret);
        assert_eq!(key_kind("sb_publishable_abc"), KeyKind::Publishable);
        assert_eq!(key_kind("something-else"), KeyKind::Opaque);
        assert_eq!(key_kind("a.b.c"), KeyKind::Opaque);
        assert_eq!(key_kind(&jwt(r#"{"sub":"x"}"#)), KeyKind::Opaque);
    }

    #[test]
    fn only_recognisable_non_service_keys_are_refused() {
        assert!(check_service_key(&jwt(r#"{"role":"service_role"}"#)).is_ok());
        assert!(check_service_key("sb_secret_x").is_ok());
        assert!(check_service_key("opaque").is_ok());
        let e = check_service_key(&jwt(r#"{"role":"anon"}"#)).unwrap_err();
        assert!(e.contains("`anon` key"), "{e}");
        let e = check_service_key("sb_publishable_x").unwrap_err();
        assert!(e.contains("publishable"), "{e}");
    }
}
