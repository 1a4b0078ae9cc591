//! Password hashing for local accounts (DESIGN §7.5): Argon2id, with the
//! parameters recorded in each PHC-format hash so they can be raised later
//! and a hash made under older ones is upgraded at the next sign-in.
//!
//! [`verify_or_dummy`] is what sign-in uses: for an unknown account it
//! still runs one full Argon2id verification (against a fixed dummy hash),
//! so an unknown user and a wrong password take the same time.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest password accepted (Argon2 would take more; nobody types more).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Today's parameters: OWASP's Argon2id recommendation (19 MiB, 2 passes, 1 lane).
fn current_params() -> Params {
    Params::new(19 * 1024, 2, 1, None).expect("fixed Argon2 parameters are valid")
}

fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, current_params())
}

/// A password that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is shorter than {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("the password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("the password could not be hashed: {0}")]
    Hash(String),
}

/// Checks a new password's length.
pub fn check_new(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

/// The PHC string of `password` under today's parameters and a fresh salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    check_new(password)?;
    let mut salt = [0u8; 16];
    super::keys::fill_random(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Wrong,
    /// Right, and the hash uses today's parameters.
    Right,
    /// Right, but the hash should be remade under today's parameters.
    RightNeedsUpgrade,
}

/// Checks `password` against `stored`, or against a dummy hash when there
/// is no account (`stored` is `None`), which always answers [`Check::Wrong`]
/// after the same work.
pub fn verify_or_dummy(stored: Option<&str>, password: &str) -> Check {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("no account has this password").unwrap_or_default());
    let (phc, real) = match stored {
        Some(s) => (s, true),
        None => (dummy.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        // An unreadable stored hash: still spend the time, then refuse.
        let _ = PasswordHash::new(dummy)
            .map(|d| hasher().verify_password(password.as_bytes(), &d).is_ok());
        return Check::Wrong;
    };
    if password.len() > MAX_PASSWORD_BYTES {
        return Check::Wrong;
    }
    // Verify with the parameters recorded in the hash, whatever today's are.
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    if !(ok && real) {
        return Check::Wrong;
    }
    let current = current_params();
    let same = parsed.algorithm.as_str() == "argon2id"
        && Params::try_from(&parsed).is_ok_and(|p| {
            p.m_cost() == current.m_cost()
                && p.t_cost() == current.t_cost()
                && p.p_cost() == current.p_cost()
        });
    if same {
        Check::Right
    } else {
        Check::RightNeedsUpgrade
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_their_parameters_and_salted() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert_eq!(verify_or_dummy(Some(&a), "correct horse"), Check::Right);
        assert_eq!(verify_or_dummy(Some(&a), "correct horsE"), Check::Wrong);
        assert_eq!(verify_or_dummy(None, "correct horse"), Check::Wrong);
        assert_eq!(verify_or_dummy(Some("not a hash"), "x"), Check::Wrong);
    }

    #[test]
    fn a_hash_under_older_parameters_verifies_and_asks_for_an_upgrade() {
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        );
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let old = weak
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert_eq!(
            verify_or_dummy(Some(&old), "correct horse"),
            Check::RightNeedsUpgrade
        );
        assert_eq!(verify_or_dummy(Some(&old), "wrong"), Check::Wrong);
    }

    #[test]
    fn new_passwords_have_a_length() {
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
        assert_eq!(
            check_new(&"x".repeat(MAX_PASSWORD_BYTES + 1)),
            Err(PasswordError::TooLong)
        );
        assert!(check_new("eight ch").is_ok());
    }
}
