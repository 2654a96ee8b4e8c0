//! Who is asking. Two modes:
//! - `local`: users in a file with argon2 password hashes, a login form, a session cookie
//!   (HttpOnly, SameSite=Strict, Secure over https); login attempts are rate-limited. The
//!   cookie is signed (`signed.rs`): the sessions table decides while the state database
//!   answers (sign-out, expiry); while it does not, the signature, the expiry in the cookie and
//!   the users file do, so that on-call can still kill during an outage.
//! - `proxy`: identity and groups from an authenticating proxy's headers (oauth2-proxy's
//!   `X-Forwarded-User`, `-Email`, `-Groups`), believed only from a configured address **and**
//!   with the shared secret header, each header sent once; groups map to roles.
//!
//! Sign-in attempts are throttled per (user name, client address) (`throttle.rs`), the client
//! read from a trusted proxy's `X-Forwarded-For` (`client.rs`). The users file is read again
//! when it changes (`users.rs`), checked at most every 30 s, so a removed or demoted user's
//! sessions stop counting within a minute. Over https the cookie is `__Host-` prefixed.
//!
//! Every state-changing request must also come from the dashboard's own origin (CSRF).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::{HeaderMap, Method};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::api::auth::{Identity, Role};

use super::config::{AuthMode, AuthSettings, Secret};

pub const SESSION_COOKIE: &str = "rd_session";
/// The cookie's name over https: the browser then only takes it from this exact host, over a
/// secure connection, for the whole site (no Domain attribute can widen it).
pub const SECURE_SESSION_COOKIE: &str = "__Host-rd_session";
/// An authenticating proxy's headers (oauth2-proxy's names) and the secret that proves it sent them.
const FORWARDED_USER: &str = "x-forwarded-user";
const FORWARDED_EMAIL: &str = "x-forwarded-email";
const FORWARDED_GROUPS: &str = "x-forwarded-groups";
const PROXY_SECRET: &str = "x-proxy-secret";
/// Every header `proxy` mode reads: together with the cookie, what tells viewers apart.
pub const PROXY_HEADERS: [&str; 4] = [FORWARDED_USER, FORWARDED_EMAIL, FORWARDED_GROUPS, PROXY_SECRET];
/// How long a request waits for the sessions table before the signed cookie decides.
const SESSION_LOOKUP: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthSetupError {
    #[error("cannot read the users file {0}: {1}")]
    Unreadable(String, String),
    #[error("the users file is not valid: {0}")]
    Invalid(String),
    #[error(
        "listening on {0} (every address) needs auth.public_origin, the address browsers use (https://rollout.example.org): \
         without it every change from a browser through an ingress is refused as cross-origin"
    )]
    NoPublicOrigin(SocketAddr),
    #[error(
        "auth.mode = \"proxy\" needs both ROLLOUT_PROXY_SECRET and auth.trusted_proxies (the proxy's addresses or \
         network): identity headers are believed only from there and with the secret"
    )]
    UntrustedProxy,
    #[error("ROLLOUT_SESSION_KEY is too weak: give at least 32 random characters (openssl rand -hex 32)")]
    WeakSessionKey,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    #[error("wrong user name or password")]
    Wrong,
    #[error("too many failed sign-ins from here for this name; try again in {} s", .0.as_secs().max(1))]
    TooMany(Duration),
    #[error("login is not available: {0}")]
    Unavailable(String),
}

pub struct Auth {
    settings: AuthSettings,
    proxy_secret: Option<Secret>,
    /// The users file as last read (local mode), read again when it changes.
    users: users::Users,
    /// Sign-in turns per (user name, client address).
    throttle: throttle::Throttle,
    /// Verified for unknown user names, so that timing does not tell which names exist.
    dummy_hash: String,
    /// The origin state-changing requests must come from.
    pub origin: String,
    pub secure_cookies: bool,
    /// Signs and checks session cookies.
    signer: signed::Signer,
    /// Turns at checking a password (Argon2), off the async workers.
    hashing: tokio::sync::Semaphore,
    /// Sessions signed out through this process (SHA-256 of the cookie): never recognised by
    /// their signature, whatever the state database says.
    /// (SHA-256 of the cookie → when it expires), only for cookies whose signature is ours.
    signed_out: Mutex<HashMap<String, i64>>,
}

pub mod client;
mod signed;
mod throttle;
mod users;
pub use throttle::network_of;

/// An argon2id hash of `password`, for the users file.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).unwrap_or_default()
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    pub fn new(
        settings: &AuthSettings,
        proxy_secret: Option<Secret>,
        site_addr: SocketAddr,
    ) -> Result<Auth, AuthSetupError> {
        let users = match (&settings.mode, &settings.users_file) {
            (AuthMode::Local, Some(path)) => users::Users::load(path)?,
            _ => users::Users::none(),
        };
        if site_addr.ip().is_unspecified() && settings.public_origin.is_none() {
            return Err(AuthSetupError::NoPublicOrigin(site_addr));
        }
        if settings.mode == AuthMode::Proxy && (proxy_secret.is_none() || settings.trusted_proxies.is_empty()) {
            return Err(AuthSetupError::UntrustedProxy);
        }
        let origin = settings.public_origin.clone().unwrap_or_else(|| format!("http://{site_addr}"));
        let mut pad = [0u8; 16];
        OsRng.fill_bytes(&mut pad);
        Ok(Auth {
            dummy_hash: hash_password(&format!("{pad:?}")),
            secure_cookies: origin.starts_with("https://"),
            origin,
            settings: settings.clone(),
            proxy_secret,
            users,
            throttle: throttle::Throttle::new(settings.login_attempts),
            signer: signed::Signer::random(),
            hashing: tokio::sync::Semaphore::new(2),
            signed_out: Mutex::default(),
        })
    }

    /// Session cookies signed with `key` (`ROLLOUT_SESSION_KEY`, shared by every replica, at
    /// least 32 characters); without one, with this process's own random key, which the log says.
    pub fn with_session_key(mut self, key: Option<&Secret>) -> Result<Auth, AuthSetupError> {
        match key {
            Some(k) if k.expose().len() < 32 || k.expose().contains("CHANGE-ME") => {
                return Err(AuthSetupError::WeakSessionKey)
            }
            Some(k) => self.signer = signed::Signer::new(k.expose().as_bytes()),
            None if self.settings.mode == AuthMode::Local => tracing::warn!(
                "ROLLOUT_SESSION_KEY is not set: while the state database is down, a session is recognised only by \
                 the replica that opened it (set the same key on every replica)"
            ),
            None => {}
        }
        Ok(self)
    }

    pub fn mode(&self) -> AuthMode {
        self.settings.mode
    }

    /// The identity a request carries, if any.
    pub async fn identify(
        &self,
        db: &PgPool,
        breaker: &super::breaker::Breaker,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Option<Identity> {
        match self.settings.mode {
            AuthMode::Proxy => self.proxy_identity(headers, peer),
            AuthMode::Local => {
                let token = cookie(headers, self.cookie_name())?;
                let query = sqlx::query_as::<_, (String, String)>(
                    "SELECT username, role FROM sessions WHERE token_sha256 = $1 AND expires_at > now()",
                )
                .bind(sha256_hex(&token))
                .fetch_optional(db);
                let query =
                    async { query.await.map_err(|e| super::error::from_sqlx(super::error::Source::StateDatabase, &e)) };
                match breaker.call(SESSION_LOOKUP, query).await {
                    Ok(row) => {
                        // Signed out here while the database was down: its row may still be there.
                        if self.is_signed_out(&token) {
                            return None;
                        }
                        let (user, role) = row?;
                        let role = Role::parse(&role)?;
                        // The users file has the last word: a user removed or demoted since
                        // signing in is not who the session says.
                        self.users.get(&user).filter(|(r, _)| *r == role)?;
                        Some(Identity { user, role, via: "local".into() })
                    }
                    // The state database does not answer: the signed cookie and the users file decide.
                    Err(_) => self.signed_identity(&token),
                }
            }
        }
    }

    /// Who a signed session cookie names, if its signature is ours, it has not expired, and the
    /// users file still gives that user that role.
    fn signed_identity(&self, token: &str) -> Option<Identity> {
        if self.is_signed_out(token) {
            return None;
        }
        let s = self.signer.check(token, chrono::Utc::now().timestamp())?;
        let (role, _) = self.users.get(&s.user).filter(|(role, _)| *role == s.role)?;
        Some(Identity { user: s.user, role, via: "local".into() })
    }

    /// Identity headers believed from a trusted proxy's address **and** with the secret (a
    /// request without a socket, in-process, has only the secret to show), each header once: a
    /// second `X-Forwarded-User` is a client's addition the proxy passed on, not the proxy's word.
    fn proxy_identity(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<Identity> {
        if let Some(twice) = PROXY_HEADERS.iter().find(|n| headers.get_all(**n).iter().count() > 1) {
            tracing::warn!(header = twice, "an identity header came more than once: refused");
            return None;
        }
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
        let by_secret = match (&self.proxy_secret, header(PROXY_SECRET)) {
            (Some(secret), Some(given)) => same(secret.expose().as_bytes(), given.as_bytes()),
            _ => false,
        };
        let by_address = peer.is_none_or(|p| client::trusted(&self.settings.trusted_proxies, p));
        if !(by_secret && by_address) {
            return None;
        }
        let user = header(FORWARDED_USER).or_else(|| header(FORWARDED_EMAIL))?.to_string();
        // One user, not a list a proxy merged from a client's header and its own.
        if user.contains(',') {
            tracing::warn!("an identity header names more than one user: refused");
            return None;
        }
        let groups: Vec<&str> =
            header(FORWARDED_GROUPS).map(|g| g.split(',').map(str::trim).collect()).unwrap_or_default();
        let role = if groups.iter().any(|g| self.settings.operator_groups.iter().any(|o| o == g)) {
            Role::Operator
        } else if self.settings.viewer_groups.is_empty()
            || groups.iter().any(|g| self.settings.viewer_groups.iter().any(|v| v == g))
        {
            Role::Viewer
        } else {
            return None;
        };
        Some(Identity { user, role, via: "proxy".into() })
    }

    /// Checks the password and opens a session; returns the session token and who it is.
    pub async fn login(
        &self,
        db: &PgPool,
        user: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<(String, Identity), LoginError> {
        if self.settings.mode != AuthMode::Local {
            return Err(LoginError::Unavailable("this dashboard uses its proxy for sign-in".into()));
        }
        // Taken before the password is checked, released (as a failure, unless it succeeds)
        // however this ends: a cancelled attempt is a failed one.
        let turn = self.throttle.take(user, client).map_err(LoginError::TooMany)?;
        let known = self.users.get(user);
        let hash = known.as_ref().map(|(_, h)| h.clone()).unwrap_or_else(|| self.dummy_hash.clone());
        // Argon2 is slow on purpose (tens of ms, 19 MiB): off the async workers, two at a time.
        let ok = {
            let _turn = self.hashing.acquire().await.map_err(|_| LoginError::Unavailable("shutting down".into()))?;
            let password = password.to_string();
            tokio::task::spawn_blocking(move || {
                PasswordHash::new(&hash)
                    .is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            })
            .await
            .unwrap_or(false)
        };
        let Some((role, _)) = known.filter(|_| ok) else {
            return Err(LoginError::Wrong);
        };
        turn.succeeded();
        let expires = chrono::Utc::now().timestamp() + i64::try_from(self.settings.session_hours).unwrap_or(12) * 3600;
        let token = self.signer.sign(user, role, expires);
        sqlx::query(
            "INSERT INTO sessions (token_sha256, username, role, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(hours => $4))",
        )
        .bind(sha256_hex(&token))
        .bind(user)
        .bind(role.as_str())
        .bind(self.settings.session_hours as i32)
        .execute(db)
        .await
        .map_err(|e| LoginError::Unavailable(format!("the state database: {e}")))?;
        Ok((token, Identity { user: user.to_string(), role, via: "local".into() }))
    }

    pub async fn logout(&self, db: &PgPool, headers: &HeaderMap) {
        if let Some(token) = cookie(headers, self.cookie_name()) {
            let hash = sha256_hex(&token);
            // Only a cookie we signed is remembered (anybody may post random ones), until it expires.
            let now = chrono::Utc::now().timestamp();
            if let Some(s) = self.signer.check(&token, now) {
                let mut out = self.signed_out.lock().unwrap_or_else(|p| p.into_inner());
                out.retain(|_, expires| *expires > now);
                out.insert(hash.clone(), s.expires);
            }
            let _ = sqlx::query("DELETE FROM sessions WHERE token_sha256 = $1").bind(hash).execute(db).await;
        }
    }

    fn is_signed_out(&self, token: &str) -> bool {
        self.signed_out.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&sha256_hex(token))
    }

    /// The session cookie's name: `__Host-` prefixed over https.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure_cookies {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }

    /// The Set-Cookie value for a new session, or for removing it (`token` None).
    pub fn session_cookie(&self, token: Option<&str>) -> String {
        let (name, secure) = (self.cookie_name(), if self.secure_cookies { "; Secure" } else { "" });
        match token {
            Some(t) => format!(
                "{name}={t}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                self.settings.session_hours * 3600
            ),
            None => format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
        }
    }

    /// Whether a request may change state: safe methods always; others only from our origin.
    pub fn same_origin(&self, method: &Method, headers: &HeaderMap) -> bool {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return true;
        }
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        match (h("origin"), h("referer")) {
            (Some(origin), _) => origin == self.origin,
            (None, Some(referer)) => referer == self.origin || referer.starts_with(&format!("{}/", self.origin)),
            (None, None) => false,
        }
    }
}

/// The value of one cookie.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_origins() {
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=1; rd_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        let auth = Auth::new(&AuthSettings::default(), None, "127.0.0.1:3000".parse().unwrap()).unwrap();
        assert!(auth.session_cookie(Some("t")).contains("HttpOnly; SameSite=Strict"));
        assert!(!auth.session_cookie(Some("t")).contains("Secure"));
        let mut post = HeaderMap::new();
        assert!(!auth.same_origin(&Method::POST, &post), "no origin at all is refused");
        post.insert("origin", "http://evil.example".parse().unwrap());
        assert!(!auth.same_origin(&Method::POST, &post));
        post.insert("origin", "http://127.0.0.1:3000".parse().unwrap());
        assert!(auth.same_origin(&Method::POST, &post));
        assert!(auth.same_origin(&Method::GET, &HeaderMap::new()));
    }

    #[test]
    fn a_setup_that_would_refuse_every_browser_or_trust_nobody_does_not_start() {
        let every: SocketAddr = "0.0.0.0:3000".parse().unwrap();
        assert_eq!(Auth::new(&AuthSettings::default(), None, every).err(), Some(AuthSetupError::NoPublicOrigin(every)));
        let with_origin =
            AuthSettings { public_origin: Some("https://rollout.example.org".into()), ..Default::default() };
        assert!(Auth::new(&with_origin, None, every).is_ok());
        let proxy = AuthSettings { mode: AuthMode::Proxy, ..with_origin.clone() };
        assert_eq!(Auth::new(&proxy, None, every).err(), Some(AuthSetupError::UntrustedProxy));
        // Both the secret and the proxy's addresses: either alone is refused.
        assert_eq!(Auth::new(&proxy, Some(Secret::new("s")), every).err(), Some(AuthSetupError::UntrustedProxy));
        let peers = AuthSettings { trusted_proxies: vec!["10.42.0.0/16".parse().unwrap()], ..proxy.clone() };
        assert_eq!(Auth::new(&peers, None, every).err(), Some(AuthSetupError::UntrustedProxy));
        assert!(Auth::new(&peers, Some(Secret::new("s")), every).is_ok());
        let local: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        let auth = || Auth::new(&AuthSettings::default(), None, local).unwrap();
        for weak in ["short", "CHANGE-ME", "CHANGE-ME-CHANGE-ME-CHANGE-ME-CHANGE-ME"] {
            assert_eq!(auth().with_session_key(Some(&Secret::new(weak))).err(), Some(AuthSetupError::WeakSessionKey));
        }
        assert!(auth().with_session_key(Some(&Secret::new("0123456789abcdef0123456789abcdef"))).is_ok());
    }

    #[test]
    fn hashes_verify() {
        let h = hash_password("s3cret");
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(Argon2::default().verify_password(b"s3cret", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"other", &parsed).is_err());
    }
}
