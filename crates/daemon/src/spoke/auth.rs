//! The spoke's sign-in: the tokens it sends to its hub, their refresh, and
//! the typed auth health behind `auth.status` (DESIGN §7.2).
//!
//! [`SpokeAuth`] loads the token set from the configured store at start and
//! on `auth.reload`, hands the hub client a bearer token (refreshing it
//! first when it expires within 30 s), refreshes once after a hub 401, and
//! records the real cause of every failure as a [`Health`]. It is the only
//! refresher of its store's tokens (one refresh at a time, behind an async
//! mutex), and it saves a refreshed (possibly rotated) token set before it
//! uses the new access token. The blocking `heph-auth` calls run on
//! `spawn_blocking`. Nothing here logs a token.

use std::sync::{Arc, Mutex};

use heph_auth::{
    AccessToken, Health, LoginCommand, OidcClient, Provider, REFRESH_SKEW_MS, StoreConfig,
    StoreError, TokenSet, TokenStore,
};
use heph_core::hlc::Clock;
use heph_core::rpc::AuthStatus;
use heph_core::wire::HubUrl;

use crate::events::Events;

/// What the spoke knows about its sign-in.
struct State {
    tokens: Option<TokenSet>,
    /// `None` while no sign-in is stored and the hub has not asked for one.
    health: Option<Health>,
    provider: Option<Provider>,
    /// Issuer and client id of the last tokens seen, for the login command.
    last_login: Option<(String, String)>,
    /// Why the store could not be read; it becomes the health once the hub
    /// asks for a sign-in (a hub without auth never needs the store).
    store_problem: Option<Health>,
    /// The provider refused `tokens`' refresh token for good (`invalid_grant`):
    /// it is not tried again until new tokens arrive, so the provider is not
    /// asked every round and the state stays `needs_login` instead of
    /// flickering through `refreshing`.
    refresh_refused: bool,
}

/// A spoke's sign-in to its hub. Shared by the sync loop, the hub client and the RPC methods.
pub struct SpokeAuth {
    hub: HubUrl,
    store: Arc<dyn TokenStore>,
    oidc: OidcClient,
    clock: Arc<dyn Clock>,
    events: Events,
    state: Mutex<State>,
    refreshing: tokio::sync::Mutex<()>,
}

/// What the store held when a refresh came to save its result.
enum Stored {
    /// Nothing changed meanwhile: the refreshed tokens were saved.
    Saved,
    /// A new sign-in was stored meanwhile; it wins.
    Newer(Box<TokenSet>),
    /// The sign-in was deleted meanwhile (`heph auth logout`).
    Gone,
}

/// What to do after the hub answered 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterUnauthorized {
    /// The tokens were refreshed: send the request once more.
    Retry,
    /// Nothing more to try; the health says why.
    GiveUp,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

impl SpokeAuth {
    /// Opens the configured store and loads the tokens for `hub`.
    pub async fn start(
        config: &StoreConfig,
        hub: HubUrl,
        clock: Arc<dyn Clock>,
        events: Events,
    ) -> Result<Arc<Self>, StoreError> {
        let store = config.open()?;
        let auth = Arc::new(Self::new(store, hub, clock, events));
        auth.reload().await;
        Ok(auth)
    }

    /// A sign-in on an already opened store, with nothing loaded yet.
    pub fn new(
        store: Arc<dyn TokenStore>,
        hub: HubUrl,
        clock: Arc<dyn Clock>,
        events: Events,
    ) -> Self {
        Self {
            hub,
            store,
            oidc: OidcClient::new(),
            clock,
            events,
            state: Mutex::new(State {
                tokens: None,
                health: None,
                provider: None,
                last_login: None,
                store_problem: None,
                refresh_refused: false,
            }),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets the health; publishes `status` when it changed.
    fn set_health(&self, health: Option<Health>) {
        let changed = {
            let mut s = self.state();
            let changed = s.health != health;
            s.health = health;
            changed
        };
        if changed {
            if let Some(h) = &self.state().health {
                tracing::info!(hub = %self.hub, state = h.name(), "auth state changed");
            }
            self.events.status();
        }
    }

    fn valid(&self, tokens: &TokenSet) -> Health {
        if tokens.expires_within(self.clock.now_ms(), REFRESH_SKEW_MS) {
            Health::RefreshDue
        } else {
            Health::Valid {
                expires_at_ms: tokens.expires_at_ms,
            }
        }
    }

    /// (Re)reads the tokens from the store: at start and on `auth.reload`.
    pub async fn reload(&self) {
        let _guard = self.refreshing.lock().await;
        let (store, hub) = (self.store.clone(), self.hub.clone());
        let loaded = blocking(move || store.load(&hub)).await;
        let health = match loaded {
            None => return,
            Some(Ok(Some(tokens))) => {
                let h = self.valid(&tokens);
                let mut s = self.state();
                if s.tokens.as_ref().map(|t| &t.issuer) != Some(&tokens.issuer) {
                    s.provider = None;
                }
                s.last_login = Some((tokens.issuer.clone(), tokens.client_id.clone()));
                s.tokens = Some(tokens);
                s.store_problem = None;
                s.refresh_refused = false;
                Some(h)
            }
            Some(Ok(None)) => {
                let mut s = self.state();
                s.tokens = None;
                s.store_problem = None;
                None
            }
            Some(Err(e)) => {
                tracing::warn!(hub = %self.hub, error = %e, "cannot read the sign-in from the token store");
                let mut s = self.state();
                s.tokens = None;
                s.store_problem = Some(store_health(&e));
                None
            }
        };
        self.set_health(health);
    }

    /// The access token to send, refreshed first when it expires within 30 s.
    /// `None` when there is no sign-in (the hub then says whether it needs one).
    pub async fn bearer(self: &Arc<Self>) -> Option<AccessToken> {
        let due = {
            let s = self.state();
            let tokens = s.tokens.as_ref()?;
            tokens.refresh_token.is_some()
                && !s.refresh_refused
                && tokens.expires_within(self.clock.now_ms(), REFRESH_SKEW_MS)
        };
        if due {
            self.refresh(false).await;
        }
        self.state().tokens.as_ref().map(|t| t.access_token.clone())
    }

    /// Refreshes the tokens. Unless `forced`, only when they are still due
    /// (another task may have just refreshed). Returns whether it succeeded.
    ///
    /// The refresh runs as a task of its own, so it is finished even when
    /// the caller gives up waiting (a long poll cancelled by `sync.now` or a
    /// local edit): once the provider has rotated the refresh token, the new
    /// one must be saved and kept, or the next refresh would present the
    /// spent one and a provider with reuse detection would revoke the
    /// whole sign-in.
    pub async fn refresh(self: &Arc<Self>, forced: bool) -> bool {
        let this = self.clone();
        tokio::spawn(async move { this.refresh_to_the_end(forced).await })
            .await
            .unwrap_or(false)
    }

    async fn refresh_to_the_end(&self, forced: bool) -> bool {
        let _guard = self.refreshing.lock().await;
        let (tokens, provider) = {
            let s = self.state();
            let Some(tokens) = s.tokens.clone() else {
                return false;
            };
            if tokens.refresh_token.is_none() || s.refresh_refused {
                return false;
            }
            if !forced && !tokens.expires_within(self.clock.now_ms(), REFRESH_SKEW_MS) {
                return true;
            }
            (tokens, s.provider.clone())
        };
        self.set_health(Some(Health::Refreshing));
        let oidc = self.oidc.clone();
        let old = tokens.clone();
        let outcome = blocking(move || {
            let provider = match provider {
                Some(p) => p,
                None => oidc.discover(&old.issuer)?,
            };
            let refreshed = oidc.refresh(&provider, &old)?;
            Ok::<_, heph_auth::AuthError>((provider, refreshed))
        })
        .await;
        let (provider, refreshed) = match outcome {
            None => return false,
            Some(Err(e)) => {
                tracing::warn!(hub = %self.hub, error = %e, "refreshing the sign-in failed");
                if e.is_invalid_grant() {
                    self.state().refresh_refused = true;
                }
                self.set_health(Some(Health::after_refresh_error(&e)));
                return false;
            }
            Some(Ok(r)) => r,
        };
        // Save first: a rotated refresh token must survive a crash right after
        // this. Unless `heph auth login` stored a new sign-in meanwhile: that
        // one wins, and this refresh's result is dropped.
        let (store, hub, new) = (
            self.store.clone(),
            self.hub.clone(),
            refreshed.tokens.clone(),
        );
        let old_refresh = tokens.refresh_token.clone();
        let saved = blocking(move || match store.load(&hub) {
            Ok(Some(current)) if current.refresh_token != old_refresh => {
                Ok(Stored::Newer(Box::new(current)))
            }
            // `heph auth logout` deleted it meanwhile: do not bring it back.
            Ok(None) => Ok(Stored::Gone),
            _ => store.save(&hub, &new).map(|()| Stored::Saved),
        })
        .await;
        let saved = match saved {
            Some(Ok(Stored::Newer(newer))) => {
                tracing::info!(hub = %self.hub, "a new sign-in was stored during a refresh; using it");
                let health = self.valid(&newer);
                {
                    let mut s = self.state();
                    s.last_login = Some((newer.issuer.clone(), newer.client_id.clone()));
                    s.tokens = Some(*newer);
                    s.provider = None;
                    s.refresh_refused = false;
                }
                self.set_health(Some(health));
                return true;
            }
            Some(Ok(Stored::Gone)) => {
                self.state().tokens = None;
                self.set_health(None);
                return false;
            }
            Some(Ok(Stored::Saved)) => Some(Ok(())),
            Some(Err(e)) => Some(Err(e)),
            None => None,
        };
        let health = match saved {
            Some(Ok(())) => self.valid(&refreshed.tokens),
            Some(Err(e)) => store_health(&e),
            None => return false,
        };
        {
            let mut s = self.state();
            s.provider = Some(provider);
            s.tokens = Some(refreshed.tokens);
        }
        tracing::info!(hub = %self.hub, rotated = refreshed.rotated, "refreshed the sign-in");
        self.set_health(Some(health));
        true
    }

    /// The hub answered 401 to a request; `description` is its `error_description`.
    pub async fn unauthorized(
        self: &Arc<Self>,
        description: &str,
        retried: bool,
    ) -> AfterUnauthorized {
        let has_refresh = self
            .state()
            .tokens
            .as_ref()
            .map(|t| t.refresh_token.is_some());
        let reason = match has_refresh {
            None => format!("the hub requires a sign-in ({description})"),
            Some(true) if !retried => {
                return if self.refresh(true).await {
                    AfterUnauthorized::Retry
                } else {
                    AfterUnauthorized::GiveUp
                };
            }
            Some(true) => {
                format!("the hub refuses the access token even after a refresh ({description})")
            }
            Some(false) => format!(
                "the hub refuses the access token ({description}) and there is no refresh token"
            ),
        };
        let lower = description.to_ascii_lowercase();
        let store_problem = self.state().store_problem.clone();
        let health = if let (None, Some(problem)) = (has_refresh, store_problem) {
            problem
        } else if lower.contains("nbf")
            || lower.contains("not yet valid")
            || lower.contains("clock")
        {
            Health::ClockSkew {
                detail: description.to_owned(),
            }
        } else {
            Health::NeedsLogin { reason }
        };
        self.set_health(Some(health));
        AfterUnauthorized::GiveUp
    }

    /// The hub answered 403 `not_member`.
    pub fn not_member(&self, message: &str) {
        let subject = self.state().tokens.as_ref().and_then(|t| t.subject.clone());
        self.set_health(Some(Health::NotMember {
            subject,
            detail: message.to_owned(),
        }));
    }

    /// The hub accepted a request: a membership refusal is over.
    pub fn accepted(&self) {
        let over = matches!(self.state().health, Some(Health::NotMember { .. }));
        if over {
            let h = self.state().tokens.as_ref().map(|t| self.valid(t));
            self.set_health(h);
        }
    }

    fn login_command(&self) -> LoginCommand {
        let s = self.state();
        let (issuer, client_id) = match &s.last_login {
            Some((i, c)) => (Some(i.clone()), Some(c.clone())),
            None => (None, None),
        };
        LoginCommand {
            hub: self.hub.to_string(),
            issuer,
            client_id,
        }
    }

    /// The health, if the user must act: its sentence and the fixing command.
    pub fn action_needed(&self) -> Option<(String, Option<String>)> {
        let health = self.state().health.clone()?;
        health.action_needed().then(|| {
            (
                health.sentence(self.hub.as_str()),
                health.hint(&self.login_command()),
            )
        })
    }

    /// The answer of `auth.status`.
    pub fn status(&self) -> AuthStatus {
        let login = self.login_command();
        let (health, info) = {
            let s = self.state();
            let health = match (&s.health, &s.tokens) {
                // Idle between requests, a valid token turns due on its own.
                (Some(Health::Valid { .. }), Some(t)) => Some(self.valid(t)),
                (h, _) => h.clone(),
            };
            (health, s.tokens.as_ref().map(TokenSet::info))
        };
        let hub = self.hub.to_string();
        let (state, action_needed, message, hint) = match &health {
            Some(h) => (
                h.name().to_owned(),
                h.action_needed(),
                h.sentence(&hub),
                h.hint(&login),
            ),
            None => (
                "not_signed_in".to_owned(),
                false,
                match &self.state().store_problem {
                    Some(p) => format!(
                        "not signed in to {hub} ({}); the hub has not asked for a sign-in",
                        p.sentence(&hub)
                    ),
                    None => format!("not signed in to {hub}; the hub has not asked for a sign-in"),
                },
                Some(login.to_string()),
            ),
        };
        AuthStatus {
            configured: true,
            state,
            subject: info.as_ref().and_then(|i| i.subject.clone()),
            username: info.as_ref().and_then(|i| i.username.clone()),
            action_needed,
            message,
            hint,
            hub_url: Some(hub),
            issuer: info.as_ref().map(|i| i.issuer.clone()),
            client_id: info.as_ref().map(|i| i.client_id.clone()),
            expires_ms: info.as_ref().and_then(|i| i.expires_at_ms),
            store: Some(self.store.describe()),
        }
    }
}

fn store_health(e: &StoreError) -> Health {
    if e.is_keyring() {
        Health::KeyringLocked {
            reason: e.to_string(),
        }
    } else {
        Health::NeedsLogin {
            reason: e.to_string(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use axum::extract::State as AxState;
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use heph_auth::store::MemoryStore;
    use heph_auth::{RefreshToken, TokenStore};
    use heph_core::hlc::ManualClock;

    /// A fake provider: discovery, and a token endpoint that answers refreshes
    /// from a script and records the refresh tokens it was sent.
    #[derive(Clone, Default)]
    pub(crate) struct Fake {
        pub(crate) issuer: Arc<Mutex<String>>,
        pub(crate) script: Arc<Mutex<Vec<(u16, serde_json::Value)>>>,
        pub(crate) seen: Arc<Mutex<Vec<String>>>,
    }

    pub(crate) async fn start_fake() -> Fake {
        let fake = Fake::default();
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|AxState(f): AxState<Fake>| async move {
                    let i = f.issuer.lock().unwrap().clone();
                    Json(serde_json::json!({"issuer": i, "token_endpoint": format!("{i}/token")}))
                }),
            )
            .route(
                "/token",
                post(|AxState(f): AxState<Fake>, body: String| async move {
                    let rt = body
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("refresh_token="))
                        .unwrap_or("")
                        .to_owned();
                    f.seen.lock().unwrap().push(rt);
                    let (status, body) = f.script.lock().unwrap().remove(0);
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        Json(body),
                    )
                }),
            )
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        *fake.issuer.lock().unwrap() = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    pub(crate) fn tokens(issuer: &str, expires_at_ms: u64) -> TokenSet {
        TokenSet {
            access_token: AccessToken::new("at-1"),
            refresh_token: Some(RefreshToken::new("rt-1")),
            expires_at_ms: Some(expires_at_ms),
            issuer: issuer.to_owned(),
            client_id: "heph".into(),
            subject: Some("alice".into()),
            username: None,
            scope: None,
        }
    }

    async fn setup(
        expires_in_ms: u64,
    ) -> (
        Fake,
        Arc<MemoryStore>,
        Arc<ManualClock>,
        Arc<SpokeAuth>,
        HubUrl,
    ) {
        let fake = start_fake().await;
        let hub = HubUrl::parse("http://127.0.0.1:1").unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let store = Arc::new(MemoryStore::default());
        let issuer = fake.issuer.lock().unwrap().clone();
        store
            .save(&hub, &tokens(&issuer, 1_000_000 + expires_in_ms))
            .unwrap();
        let auth = Arc::new(SpokeAuth::new(
            store.clone(),
            hub.clone(),
            clock.clone(),
            Events::new(),
        ));
        auth.reload().await;
        (fake, store, clock, auth, hub)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn refreshes_30s_before_expiry_and_saves_a_rotated_token_first() {
        let (fake, store, clock, auth, hub) = setup(120_000).await;
        assert_eq!(auth.status().state, "valid");
        // 89 s later: 31 s left, not yet due.
        clock.advance(89_000);
        assert_eq!(auth.bearer().await.unwrap().expose(), "at-1");
        assert!(fake.seen.lock().unwrap().is_empty());
        // 2 s later: within the 30 s skew, so the next request refreshes first.
        clock.advance(2_000);
        assert_eq!(auth.status().state, "refresh_due");
        fake.script.lock().unwrap().push((
            200,
            serde_json::json!({"access_token": "at-2", "refresh_token": "rt-2", "expires_in": 300}),
        ));
        assert_eq!(auth.bearer().await.unwrap().expose(), "at-2");
        assert_eq!(*fake.seen.lock().unwrap(), ["rt-1"]);
        let saved = store.load(&hub).unwrap().unwrap();
        assert_eq!(
            saved.refresh_token.unwrap().expose(),
            "rt-2",
            "the rotated token is stored"
        );
        let s = auth.status();
        assert_eq!((s.state.as_str(), s.action_needed), ("valid", false));
        assert!(!serde_json::to_string(&s).unwrap().contains("at-2"));
    }

    /// A store whose `save` waits at a gate the test opens.
    struct GatedStore {
        inner: MemoryStore,
        entered: std::sync::mpsc::Sender<()>,
        gate: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl TokenStore for GatedStore {
        fn load(&self, hub: &HubUrl) -> Result<Option<TokenSet>, StoreError> {
            self.inner.load(hub)
        }
        fn save(&self, hub: &HubUrl, tokens: &TokenSet) -> Result<(), StoreError> {
            let _ = self.entered.send(());
            let _ = self.gate.lock().unwrap().recv();
            self.inner.save(hub, tokens)
        }
        fn delete(&self, hub: &HubUrl) -> Result<bool, StoreError> {
            self.inner.delete(hub)
        }
        fn describe(&self) -> String {
            "gated".into()
        }
    }

    /// A signed-in spoke whose token is due, a provider that will rotate
    /// it, and a store whose `save` waits at a gate the test opens.
    struct Gated {
        fake: Fake,
        hub: HubUrl,
        store: Arc<GatedStore>,
        auth: Arc<SpokeAuth>,
        /// Receives when a save has started (the provider already rotated).
        entered: std::sync::mpsc::Receiver<()>,
        /// Lets the save go on.
        open: std::sync::mpsc::Sender<()>,
    }

    async fn gated() -> Gated {
        let fake = start_fake().await;
        let issuer = fake.issuer.lock().unwrap().clone();
        let hub = HubUrl::parse("http://127.0.0.1:1").unwrap();
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (open, gate) = std::sync::mpsc::channel();
        let store = Arc::new(GatedStore {
            inner: MemoryStore::default(),
            entered: entered_tx,
            gate: Mutex::new(gate),
        });
        store.inner.save(&hub, &tokens(&issuer, 0)).unwrap();
        let auth = Arc::new(SpokeAuth::new(
            store.clone(),
            hub.clone(),
            Arc::new(ManualClock::new(1_000_000)),
            Events::new(),
        ));
        auth.reload().await;
        fake.script.lock().unwrap().push((
            200,
            serde_json::json!({"access_token": "at-2", "refresh_token": "rt-2", "expires_in": 300}),
        ));
        Gated {
            fake,
            hub,
            store,
            auth,
            entered,
            open,
        }
    }

    /// Asks for a bearer on a task of its own, and returns once its refresh
    /// has reached the (gated) save: the provider has rotated the token.
    async fn refresh_until_saving(
        auth: &Arc<SpokeAuth>,
        entered: std::sync::mpsc::Receiver<()>,
    ) -> tokio::task::JoinHandle<Option<AccessToken>> {
        let task = tokio::spawn({
            let auth = auth.clone();
            async move { auth.bearer().await }
        });
        tokio::task::spawn_blocking(move || {
            entered.recv_timeout(std::time::Duration::from_secs(20))
        })
        .await
        .unwrap()
        .expect("the refresh never reached the save");
        task
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_new_access_token_is_used_only_after_the_save() {
        let Gated {
            fake: _,
            hub,
            store,
            auth,
            entered,
            open,
        } = gated().await;
        let task = refresh_until_saving(&auth, entered).await;
        // The refresh is saving: the daemon still holds (and would send) the old token.
        let held = auth
            .state()
            .tokens
            .as_ref()
            .unwrap()
            .access_token
            .expose()
            .to_owned();
        assert_eq!(held, "at-1");
        let saved = store.inner.load(&hub).unwrap().unwrap();
        assert_eq!(saved.refresh_token.unwrap().expose(), "rt-1");
        open.send(()).unwrap();
        assert_eq!(task.await.unwrap().unwrap().expose(), "at-2");
        assert_eq!(
            store
                .inner
                .load(&hub)
                .unwrap()
                .unwrap()
                .refresh_token
                .unwrap()
                .expose(),
            "rt-2"
        );
    }

    /// A caller that stops waiting (a long poll cancelled by `sync.now`)
    /// must not lose a refresh the provider already performed: the rotated
    /// token is still saved and used, and the spent one never sent again.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_refresh_whose_caller_gives_up_still_keeps_the_rotated_token() {
        let Gated {
            fake,
            hub,
            store,
            auth,
            entered,
            open,
        } = gated().await;
        let caller = refresh_until_saving(&auth, entered).await;
        // The provider has rotated rt-1 away; the caller gives up now.
        caller.abort();
        let _ = caller.await;
        open.send(()).unwrap();
        let mut kept = false;
        for _ in 0..200 {
            let held = auth
                .state()
                .tokens
                .as_ref()
                .map(|t| t.access_token.expose().to_owned());
            if held.as_deref() == Some("at-2") {
                kept = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(kept, "the refreshed tokens were lost with the caller");
        let saved = store.inner.load(&hub).unwrap().unwrap();
        assert_eq!(saved.refresh_token.unwrap().expose(), "rt-2");
        assert_eq!(auth.bearer().await.unwrap().expose(), "at-2");
        assert_eq!(
            *fake.seen.lock().unwrap(),
            ["rt-1"],
            "rt-1 was sent once only"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_sign_in_stored_during_a_refresh_wins() {
        let (fake, store, _clock, auth, hub) = setup(0).await;
        let issuer = fake.issuer.lock().unwrap().clone();
        // `heph auth login` saved new tokens after the daemon loaded the old ones.
        let mut fresh = tokens(&issuer, u64::MAX / 2);
        fresh.access_token = AccessToken::new("at-login");
        fresh.refresh_token = Some(RefreshToken::new("rt-login"));
        store.save(&hub, &fresh).unwrap();
        fake.script.lock().unwrap().push((
            200,
            serde_json::json!({"access_token": "at-2", "refresh_token": "rt-2", "expires_in": 300}),
        ));
        assert_eq!(auth.bearer().await.unwrap().expose(), "at-login");
        let kept = store.load(&hub).unwrap().unwrap();
        assert_eq!(
            kept.refresh_token.unwrap().expose(),
            "rt-login",
            "the login was not overwritten"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_refused_refresh_needs_login_with_the_exact_command() {
        let (fake, _store, _clock, auth, hub) = setup(0).await;
        fake.script.lock().unwrap().push((
            400,
            serde_json::json!({"error": "invalid_grant", "error_description": "grant request is invalid"}),
        ));
        assert_eq!(
            auth.bearer().await.unwrap().expose(),
            "at-1",
            "the old token is still sent"
        );
        let s = auth.status();
        assert_eq!((s.state.as_str(), s.action_needed), ("needs_login", true));
        let issuer = fake.issuer.lock().unwrap().clone();
        assert_eq!(
            s.hint.as_deref(),
            Some(
                format!("heph auth login --hub-url {hub} --issuer {issuer} --client-id heph")
                    .as_str()
            )
        );
        assert!(s.message.contains("invalid_grant"), "{}", s.message);
        // The refused refresh token is not tried again, by a later request or
        // a 401, so the state stays put (the fake would panic on a 2nd call).
        assert_eq!(auth.bearer().await.unwrap().expose(), "at-1");
        assert!(matches!(
            auth.unauthorized("expired", false).await,
            AfterUnauthorized::GiveUp
        ));
        assert_eq!(
            fake.seen.lock().unwrap().len(),
            1,
            "the provider was asked again"
        );
        assert_eq!(auth.status().state, "needs_login");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_401_refreshes_once_then_needs_login() {
        let (fake, _store, _clock, auth, _hub) = setup(600_000).await;
        fake.script.lock().unwrap().push((
            200,
            serde_json::json!({"access_token": "at-2", "expires_in": 300}),
        ));
        assert_eq!(
            auth.unauthorized("token expired", false).await,
            AfterUnauthorized::Retry
        );
        assert_eq!(auth.bearer().await.unwrap().expose(), "at-2");
        assert_eq!(
            auth.unauthorized("token expired", true).await,
            AfterUnauthorized::GiveUp
        );
        let s = auth.status();
        assert_eq!(s.state, "needs_login");
        assert!(s.message.contains("even after a refresh"), "{}", s.message);
        assert_eq!(
            fake.seen.lock().unwrap().len(),
            1,
            "one refresh per 401, not a loop"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_unreachable_provider_is_not_a_refusal() {
        let (fake, _store, _clock, auth, _hub) = setup(0).await;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        {
            let mut s = auth.state();
            s.tokens.as_mut().unwrap().issuer = dead.clone();
        }
        auth.bearer().await;
        let s = auth.status();
        assert_eq!((s.state.as_str(), s.action_needed), ("unreachable", false));
        assert!(
            s.message.contains(&dead) && s.message.contains("refused"),
            "{}",
            s.message
        );
        assert!(fake.seen.lock().unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn no_sign_in_waits_for_the_hub_to_ask() {
        let hub = HubUrl::parse("http://127.0.0.1:1").unwrap();
        let auth = Arc::new(SpokeAuth::new(
            Arc::new(MemoryStore::default()),
            hub.clone(),
            Arc::new(ManualClock::new(0)),
            Events::new(),
        ));
        auth.reload().await;
        assert!(auth.bearer().await.is_none());
        assert_eq!(auth.status().state, "not_signed_in");
        assert!(!auth.status().action_needed);
        assert_eq!(
            auth.unauthorized("no token", false).await,
            AfterUnauthorized::GiveUp
        );
        let s = auth.status();
        assert_eq!((s.state.as_str(), s.action_needed), ("needs_login", true));
        assert_eq!(
            s.hint.as_deref(),
            Some("heph auth login --hub-url http://127.0.0.1:1")
        );
        auth.not_member("sub alice is not a member");
        assert_eq!(auth.status().state, "not_member");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_locked_keyring_matters_once_the_hub_asks() {
        let hub = HubUrl::parse("http://127.0.0.1:1").unwrap();
        let store = heph_auth::store::KeyringStore::with_opener(
            Arc::new(|| {
                Err(heph_auth::keyring_core::Error::NoStorageAccess(
                    "collection is locked".into(),
                ))
            }),
            std::time::Duration::from_secs(3),
        );
        let auth = Arc::new(SpokeAuth::new(
            Arc::new(store),
            hub,
            Arc::new(ManualClock::new(0)),
            Events::new(),
        ));
        auth.reload().await;
        let s = auth.status();
        assert_eq!(
            (s.state.as_str(), s.action_needed),
            ("not_signed_in", false)
        );
        assert!(s.message.contains("keyring is locked"), "{}", s.message);
        auth.unauthorized("no token", false).await;
        let s = auth.status();
        assert_eq!(
            (s.state.as_str(), s.action_needed),
            ("keyring_locked", true)
        );
        assert!(s.hint.unwrap().ends_with("--token-store file"));
    }
}
