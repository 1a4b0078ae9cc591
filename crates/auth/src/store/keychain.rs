//! The macOS Keychain behind `--token-store keyring`: the user's login
//! keychain through `apple-native-keyring-store`. It only opens that store
//! and sorts the Keychain's refusals; the timeout, the entry naming and the
//! error messages stay in `store.rs`, shared with Linux.

use std::sync::Arc;

use keyring_core::{CredentialStore, Error};

/// The login keychain.
///
/// Not the crate's `protected` store: that needs an app signed with a
/// provisioning profile, which a command-line tool is not.
pub(super) fn open() -> keyring_core::Result<Arc<CredentialStore>> {
    let store: Arc<CredentialStore> = apple_native_keyring_store::keychain::Store::new()?;
    Ok(store)
}

/// Reports a locked keychain, or access the user denied, as
/// `NoStorageAccess` (as the Secret Service store reports a locked
/// collection); the store crate calls these platform failures.
pub(super) fn classify(e: Error) -> Error {
    match e {
        Error::PlatformFailure(source) if is_refusal(&*source) => Error::NoStorageAccess(source),
        other => other,
    }
}

fn is_refusal(source: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    source
        .downcast_ref::<security_framework::base::Error>()
        .is_some_and(|e| {
            matches!(
                e.code(),
                // errSecUserCanceled: "Deny" in the access prompt.
                -128
                // errSecAuthFailed: the unlock password was refused.
                | -25293
                // errSecInteractionNotAllowed: locked, and no window to ask in (ssh).
                | -25308
            )
        })
}

#[cfg(test)]
mod tests {
    use super::super::{StoreError, keyring_error};
    use super::*;

    fn check(code: i32, locked: bool) {
        let e = Error::PlatformFailure(Box::new(security_framework::base::Error::from_code(code)));
        let err = keyring_error(e);
        assert_eq!(
            matches!(err, StoreError::KeyringLocked { .. }),
            locked,
            "{code}: {err:?}"
        );
        assert!(err.is_keyring() && err.to_string().contains("--token-store file"));
    }

    #[test]
    fn a_locked_or_denied_keychain_is_reported_as_locked() {
        check(-128, true);
        check(-25293, true);
        check(-25308, true);
        // errSecNoDefaultKeychain: not a refusal, the keychain is missing.
        check(-25307, false);
    }
}
