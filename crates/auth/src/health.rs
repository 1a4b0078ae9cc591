//! The auth health of a spoke as a real type (DESIGN §7.2): each state knows
//! its sentence, whether the user must act, and the command that fixes it.
//! Pure: the daemon decides the state, `heph auth status`, `sync.status` and
//! the TUI show it.

use std::fmt;

use crate::error::AuthError;

/// The exact `heph auth login` command for a hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginCommand {
    pub hub: String,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
}

impl fmt::Display for LoginCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "heph auth login --hub-url {}", self.hub)?;
        if let Some(i) = &self.issuer {
            write!(f, " --issuer {i}")?;
        }
        if let Some(c) = &self.client_id {
            write!(f, " --client-id {c}")?;
        }
        Ok(())
    }
}

/// Where a spoke's sign-in stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// A usable access token (until `expires_at_ms`, if known).
    Valid { expires_at_ms: Option<u64> },
    /// The access token expires soon; a refresh comes next.
    RefreshDue,
    /// A refresh is under way.
    Refreshing,
    /// The identity provider could not be reached; retried on its own.
    Unreachable { url: String, cause: String },
    /// The provider answered a refresh with an error other than a refused grant.
    Rejected { detail: String },
    /// No usable tokens: the user must sign in (again).
    NeedsLogin { reason: String },
    /// The token store (OS keyring) is locked or absent.
    KeyringLocked { reason: String },
    /// The hub accepts the token but `sub` is not one of its members (403).
    NotMember {
        subject: Option<String>,
        detail: String,
    },
    /// The hub or provider thinks this device's clock is off.
    ClockSkew { detail: String },
}

impl Health {
    /// The state's stable name (`auth.status`'s `state`).
    pub fn name(&self) -> &'static str {
        match self {
            Health::Valid { .. } => "valid",
            Health::RefreshDue => "refresh_due",
            Health::Refreshing => "refreshing",
            Health::Unreachable { .. } => "unreachable",
            Health::Rejected { .. } => "rejected",
            Health::NeedsLogin { .. } => "needs_login",
            Health::KeyringLocked { .. } => "keyring_locked",
            Health::NotMember { .. } => "not_member",
            Health::ClockSkew { .. } => "clock_skew",
        }
    }

    /// Whether the user must do something (the others heal on their own).
    pub fn action_needed(&self) -> bool {
        matches!(
            self,
            Health::Rejected { .. }
                | Health::NeedsLogin { .. }
                | Health::KeyringLocked { .. }
                | Health::NotMember { .. }
                | Health::ClockSkew { .. }
        )
    }

    /// One sentence describing the state for `hub`.
    pub fn sentence(&self, hub: &str) -> String {
        match self {
            Health::Valid { .. } => format!("signed in to {hub}"),
            Health::RefreshDue => {
                format!("signed in to {hub}; the access token expires soon and is refreshed next")
            }
            Health::Refreshing => format!("signed in to {hub}; refreshing the access token"),
            Health::Unreachable { url, cause } => format!(
                "cannot reach the identity provider at {url} to refresh the sign-in for {hub} ({cause}); retrying on its own"
            ),
            Health::Rejected { detail } => {
                format!("the identity provider refused to refresh the sign-in for {hub}: {detail}")
            }
            Health::NeedsLogin { reason } => {
                format!("sign-in needed for {hub}: {reason}")
            }
            Health::KeyringLocked { reason } => {
                format!("cannot read the sign-in for {hub} from the token store: {reason}")
            }
            Health::NotMember { subject, detail } => format!(
                "the hub {hub} does not admit {}: {detail}",
                subject.as_deref().unwrap_or("this identity")
            ),
            Health::ClockSkew { detail } => {
                format!("this device's clock disagrees with {hub}: {detail}")
            }
        }
    }

    /// The command (or action) that fixes it, if the user must act.
    pub fn hint(&self, login: &LoginCommand) -> Option<String> {
        match self {
            Health::Valid { .. } | Health::RefreshDue | Health::Refreshing => None,
            Health::Unreachable { url, .. } => Some(format!(
                "check that the identity provider is up: curl {url}"
            )),
            Health::Rejected { .. } | Health::NeedsLogin { .. } => Some(login.to_string()),
            Health::KeyringLocked { .. } => Some(format!(
                "unlock the keyring, or keep tokens in a file: {login} --token-store file"
            )),
            Health::NotMember { subject, .. } => Some(format!(
                "ask the hub's owner to run: heph hub grant {} --role writer",
                subject.as_deref().unwrap_or("SUB")
            )),
            Health::ClockSkew { .. } => {
                Some("enable NTP on this device (timedatectl set-ntp true)".into())
            }
        }
    }

    /// The state after a refresh failed with `e`.
    pub fn after_refresh_error(e: &AuthError) -> Health {
        match e {
            AuthError::Unreachable { url, cause } => Health::Unreachable {
                url: url.clone(),
                cause: cause.clone(),
            },
            e if e.is_invalid_grant() => Health::NeedsLogin {
                reason: format!("the identity provider no longer accepts the refresh token ({e})"),
            },
            e => Health::Rejected {
                detail: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login() -> LoginCommand {
        LoginCommand {
            hub: "https://hub.example".into(),
            issuer: Some("https://idp.example/app/heph/".into()),
            client_id: Some("heph".into()),
        }
    }

    #[test]
    fn each_state_says_what_to_run() {
        let cmd = "heph auth login --hub-url https://hub.example --issuer https://idp.example/app/heph/ --client-id heph";
        let check = |h: Health, name: &str, action: bool, hint: Option<&str>| {
            assert_eq!(h.name(), name);
            assert_eq!(h.action_needed(), action, "{name}");
            assert_eq!(h.hint(&login()).as_deref(), hint, "{name}");
            assert!(
                h.sentence("https://hub.example")
                    .contains("https://hub.example"),
                "{name}"
            );
        };
        check(
            Health::Valid {
                expires_at_ms: None,
            },
            "valid",
            false,
            None,
        );
        check(Health::RefreshDue, "refresh_due", false, None);
        check(Health::Refreshing, "refreshing", false, None);
        check(
            Health::Unreachable {
                url: "http://idp".into(),
                cause: "refused".into(),
            },
            "unreachable",
            false,
            Some("check that the identity provider is up: curl http://idp"),
        );
        check(
            Health::NeedsLogin { reason: "r".into() },
            "needs_login",
            true,
            Some(cmd),
        );
        check(
            Health::Rejected { detail: "d".into() },
            "rejected",
            true,
            Some(cmd),
        );
        check(
            Health::KeyringLocked {
                reason: "locked".into(),
            },
            "keyring_locked",
            true,
            Some(&format!(
                "unlock the keyring, or keep tokens in a file: {cmd} --token-store file"
            )),
        );
        check(
            Health::NotMember {
                subject: Some("bob".into()),
                detail: "403".into(),
            },
            "not_member",
            true,
            Some("ask the hub's owner to run: heph hub grant bob --role writer"),
        );
        check(
            Health::ClockSkew { detail: "d".into() },
            "clock_skew",
            true,
            Some("enable NTP on this device (timedatectl set-ntp true)"),
        );
    }

    #[test]
    fn a_refused_refresh_is_never_unreachable() {
        let refused = AuthError::Rejected {
            url: "http://idp/token".into(),
            status: 400,
            error: Some("invalid_grant".into()),
            description: Some("grant request is invalid".into()),
        };
        assert_eq!(Health::after_refresh_error(&refused).name(), "needs_login");
        let down = AuthError::Rejected {
            url: "u".into(),
            status: 503,
            error: None,
            description: None,
        };
        assert_eq!(Health::after_refresh_error(&down).name(), "rejected");
        let gone = AuthError::Unreachable {
            url: "u".into(),
            cause: "refused".into(),
        };
        assert_eq!(Health::after_refresh_error(&gone).name(), "unreachable");
    }
}
