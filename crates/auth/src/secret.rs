//! Secret newtypes. Their `Debug` and `Display` print `[redacted]`; they are
//! not `Serialize`, so a secret reaches JSON only through
//! [`crate::TokenSet::to_store_json`], whose result is itself a secret.
//! [`expose`](AccessToken::expose) is the one way to read the value, and
//! each call site is where a secret leaves this crate on purpose.

use std::fmt;

macro_rules! secret {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The secret value itself: only for sending it where it belongs.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[redacted]")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[redacted]")
            }
        }
    };
}

secret!(
    /// An OAuth access token (sent to the hub as `Authorization: Bearer`).
    AccessToken
);
secret!(
    /// An OAuth refresh token (sent only to the provider's token and revocation endpoints).
    RefreshToken
);
secret!(
    /// The device code of a device authorization (sent only to the token endpoint).
    DeviceCode
);
secret!(
    /// A token set encoded as JSON for a token store.
    StoreJson
);
