//! [`TokenSet`], what a sign-in yields, and [`TokenInfo`], its public half.
//!
//! `TokenSet` is not `Serialize`: it becomes JSON only through
//! [`TokenSet::to_store_json`] (itself a secret) for a token store.
//! `TokenInfo` carries no secret and is what status output, logs and
//! `--json` may show.

use serde::{Deserialize, Serialize};

use crate::secret::{AccessToken, RefreshToken, StoreJson};

/// The tokens of one sign-in, for one hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSet {
    pub access_token: AccessToken,
    /// Absent when the provider issued none (no `offline_access`).
    pub refresh_token: Option<RefreshToken>,
    /// Unix milliseconds when the access token expires, if the provider said.
    pub expires_at_ms: Option<u64>,
    /// The issuer that issued them.
    pub issuer: String,
    /// The OAuth client they were issued to.
    pub client_id: String,
    /// The `sub` of the signed-in user, when known.
    pub subject: Option<String>,
    /// The user's name as the provider shows it (`preferred_username`), when known.
    pub username: Option<String>,
    /// The granted scope.
    pub scope: Option<String>,
}

/// A token set's public half: safe to print, log and serialize.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub issuer: String,
    pub client_id: String,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
    pub has_refresh_token: bool,
}

/// The stored form (format version 1). Private: only the store sees it.
#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_at_ms: Option<u64>,
    issuer: String,
    client_id: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

impl TokenSet {
    /// The public half.
    pub fn info(&self) -> TokenInfo {
        TokenInfo {
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            subject: self.subject.clone(),
            username: self.username.clone(),
            scope: self.scope.clone(),
            expires_at_ms: self.expires_at_ms,
            has_refresh_token: self.refresh_token.is_some(),
        }
    }

    /// Whether the access token expires within `skew_ms` of `now_ms`.
    pub fn expires_within(&self, now_ms: u64, skew_ms: u64) -> bool {
        self.expires_at_ms
            .is_some_and(|at| at <= now_ms.saturating_add(skew_ms))
    }

    fn to_stored(&self) -> Stored {
        Stored {
            version: 1,
            access_token: self.access_token.expose().to_owned(),
            refresh_token: self.refresh_token.as_ref().map(|r| r.expose().to_owned()),
            expires_at_ms: self.expires_at_ms,
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            subject: self.subject.clone(),
            username: self.username.clone(),
            scope: self.scope.clone(),
        }
    }

    fn from_stored(s: Stored) -> Result<Self, String> {
        if s.version != 1 {
            return Err(format!(
                "format version {} is not one this heph reads (1)",
                s.version
            ));
        }
        Ok(Self {
            access_token: AccessToken::new(s.access_token),
            refresh_token: s.refresh_token.map(RefreshToken::new),
            expires_at_ms: s.expires_at_ms,
            issuer: s.issuer,
            client_id: s.client_id,
            subject: s.subject,
            username: s.username,
            scope: s.scope,
        })
    }

    /// The JSON a token store keeps.
    pub fn to_store_json(&self) -> StoreJson {
        StoreJson::new(serde_json::to_string(&self.to_stored()).unwrap_or_default())
    }

    /// Reads what [`to_store_json`](Self::to_store_json) wrote. The error
    /// never quotes the input (it holds secrets).
    pub fn from_store_json(text: &str) -> Result<Self, String> {
        let stored: Stored = serde_json::from_str(text).map_err(sanitized)?;
        Self::from_stored(stored)
    }

    pub(crate) fn to_store_value(&self) -> serde_json::Value {
        serde_json::to_value(self.to_stored()).unwrap_or_default()
    }

    pub(crate) fn from_store_value(value: serde_json::Value) -> Result<Self, String> {
        let stored: Stored = serde_json::from_value(value).map_err(sanitized)?;
        Self::from_stored(stored)
    }
}

/// A serde error as a sentence that cannot quote the (secret) input.
pub(crate) fn sanitized(e: serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "it could not be read",
        Category::Syntax => "it is not valid JSON",
        Category::Data => "it is JSON of the wrong shape (a missing or mistyped field)",
        Category::Eof => "it ends too early",
    };
    if e.line() > 0 {
        format!("{what} (line {}, column {})", e.line(), e.column())
    } else {
        what.to_owned()
    }
}

/// The `sub` claim of a JWT, read without verifying it: only for showing
/// who signed in (the hub verifies tokens; this never grants anything).
pub fn jwt_subject(token: &str) -> Option<String> {
    jwt_string_claim(token, "sub")
}

/// A string claim of a JWT, read without verifying it (for display only):
/// terminal escapes removed ([`heph_core::text`]), at most 200 characters.
pub fn jwt_string_claim(token: &str, name: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64url_decode(payload)?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let value = claims.get(name)?.as_str()?;
    Some(heph_core::text::one_line(value, 200).into_owned())
}

fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes().take_while(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> TokenSet {
        TokenSet {
            access_token: AccessToken::new("at-SECRET-1"),
            refresh_token: Some(RefreshToken::new("rt-SECRET-2")),
            expires_at_ms: Some(1_000_000),
            issuer: "http://127.0.0.1:9/".into(),
            client_id: "heph".into(),
            subject: Some("alice".into()),
            username: None,
            scope: Some("openid offline_access".into()),
        }
    }

    #[test]
    fn debug_display_and_info_never_show_a_secret() {
        let t = sample();
        let views = [
            format!("{t:?}"),
            format!("{:?}", t.access_token),
            format!("{}", t.access_token),
            format!("{}", t.refresh_token.as_ref().unwrap()),
            format!("{:?}", t.to_store_json()),
            format!("{}", t.to_store_json()),
            serde_json::to_string(&t.info()).unwrap(),
            format!("{:?}", t.info()),
        ];
        for v in &views {
            assert!(!v.contains("SECRET"), "{v}");
        }
        assert!(views[0].contains("[redacted]") && views[0].contains("alice"));
        assert!(
            views[6].contains("\"has_refresh_token\":true"),
            "{}",
            views[6]
        );
    }

    #[test]
    fn the_store_form_round_trips_and_its_errors_do_not_quote_it() {
        let t = sample();
        let json = t.to_store_json();
        assert_eq!(TokenSet::from_store_json(json.expose()).unwrap(), t);
        // A wrong type next to a secret: serde would quote the value.
        let bad = r#"{"version":1,"access_token":"at-SECRET-1","expires_at_ms":"rt-SECRET-2","issuer":"i","client_id":"c"}"#;
        let err = TokenSet::from_store_json(bad).unwrap_err();
        assert!(!err.contains("SECRET"), "{err}");
        assert!(err.contains("wrong shape"), "{err}");
        let err = TokenSet::from_store_json(
            "{\"version\":2,\"access_token\":\"a\",\"issuer\":\"i\",\"client_id\":\"c\"}",
        )
        .unwrap_err();
        assert!(err.contains("format version 2"), "{err}");
    }

    #[test]
    fn jwt_subject_reads_the_sub_claim() {
        // {"alg":"none"} . {"sub":"alice","aud":"x"} . sig
        let token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsImF1ZCI6IngifQ.c2ln";
        assert_eq!(jwt_subject(token).as_deref(), Some("alice"));
        assert_eq!(jwt_subject("opaque-token"), None);
        assert_eq!(jwt_subject("a.!!!.c"), None);
        // Claims are shown on a terminal: escapes and line breaks are removed.
        // {"sub": "alice\x1b]0;pwned\x07", "preferred_username": "Al\u202eice\r\nhint: x"}
        let hostile = "e30.eyJzdWIiOiAiYWxpY2VcdTAwMWJdMDtwd25lZFx1MDAwNyIsICJwcmVmZXJyZWRfdXNlcm5hbWUiOiAiQWxcdTIwMmVpY2VcclxuaGludDogeCJ9.c2ln";
        assert_eq!(jwt_subject(hostile).as_deref(), Some("alice]0;pwned"));
        assert_eq!(
            jwt_string_claim(hostile, "preferred_username").as_deref(),
            Some("Alicehint: x")
        );
    }

    #[test]
    fn expiry_uses_the_skew() {
        let t = sample();
        assert!(!t.expires_within(900_000, 30_000));
        assert!(t.expires_within(970_000, 30_000));
        let never = TokenSet {
            expires_at_ms: None,
            ..sample()
        };
        assert!(!never.expires_within(u64::MAX - 1, 30_000));
    }
}
