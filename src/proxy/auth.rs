//! Who is asking, per request: the identity walk, and `Proxy-Authorization: Basic` against
//! `identity.credentials`.
//!
//! # Identity order ([`identify`])
//! 1. A verified client certificate on the TLS listener whose SAN DNS names (else CN) match an
//!    `identity.certificates` pattern. A verified certificate that matches no pattern falls
//!    through.
//! 2. If `identity.credentials` is set: `Proxy-Authorization: Basic`. A wrong user or password,
//!    a malformed header or another scheme is a `407`, never a fall-through. Credentials are
//!    accepted on the TLS listener only, unless `identity.allow_basic_over_plaintext`; Basic
//!    sent in plain text when that is off is refused with a `403` (the password has already
//!    crossed the network in clear; a 407 would make the browser send it again).
//!    **When credentials are required**: a request without `Proxy-Authorization` gets the `407`
//!    challenge when Basic is usable on its connection (TLS, or plain text allowed) and neither
//!    step 1 nor step 3 identifies the client. Browsers send credentials only after a challenge,
//!    so clients nothing else identifies are asked to log in instead of falling to the default
//!    ministry; clients inside an `identity.sources` range are served by their source without
//!    credentials (and are identified by user when they send them). The default ministry thus
//!    applies only where Basic is not usable (plain listener without
//!    `allow_basic_over_plaintext`).
//! 3. The source address: the most specific `identity.sources` CIDR.
//! 4. `identity.default_ministry`, else nobody (blocked by `_unknown/_default`).
//!
//! # Password checks
//! argon2 and bcrypt are slow on purpose (tens of milliseconds), so they never run on the async
//! executor: each check runs under `spawn_blocking`, at most one per CPU at a time (a semaphore,
//! so a password-guessing flood queues instead of exhausting the blocking pool). A successful
//! check is remembered in a bounded map keyed by SHA-256(random per-process salt ‖ user ‖ NUL ‖
//! password), so a user's next requests cost one hash and one map probe; neither the password
//! nor an unsalted digest of it is kept. The map lives in the snapshot: a reload (a changed
//! hash, a removed user) starts empty. Failed checks are not remembered. An unknown user costs a
//! check against another user's hash, so response times do not reveal which names exist.
//! bcrypt compares the first 72 bytes of a password, as every bcrypt implementation does.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use base64::Engine;
use dashmap::DashMap;
use http::header::PROXY_AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use tokio::sync::Semaphore;

use super::respond::{self, Answer};
use super::service::ConnCtx;
use crate::config::settings::User;
use crate::identity::{Identified, Method};
use crate::policy::{MinistryId, Policy};
use crate::snapshot::Snapshot;

/// Successful checks remembered per snapshot; the oldest is forgotten first beyond this.
pub const MAX_REMEMBERED: usize = 10_000;

type Digest = [u8; 32];

/// The users of `identity.credentials` in one snapshot, and the checks already made.
pub struct Credentials {
    users: HashMap<Box<str>, Entry>,
    /// Any user's hash: what an unknown user name is checked against (constant work).
    decoy: Option<Arc<str>>,
    salt: [u8; 32],
    remembered: DashMap<Digest, (Arc<str>, MinistryId)>,
    /// Insertion order of `remembered`, for eviction.
    order: Mutex<VecDeque<Digest>>,
    /// Concurrent password checks. A permit moves into the blocking task, so a check whose
    /// request was abandoned still holds its slot until the hash is done.
    slots: Arc<Semaphore>,
}

struct Entry {
    name: Arc<str>,
    hash: Arc<str>,
    ministry: MinistryId,
}

/// Why credentials were not accepted (each is a 407).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    Missing,
    Malformed,
    Wrong,
}

impl Credentials {
    /// Compiles the validated users; users of an unknown ministry cannot occur (validated) and
    /// would be skipped.
    pub fn build(users: &[User], policy: &Policy) -> Credentials {
        let mut map = HashMap::new();
        for u in users {
            let Some(ministry) = policy.ministry_id(&u.ministry) else {
                continue;
            };
            let entry = Entry {
                name: Arc::from(u.name.as_str()),
                hash: Arc::from(u.password_hash.as_str()),
                ministry,
            };
            map.insert(Box::from(u.name.as_str()), entry);
        }
        let mut salt = [0u8; 32];
        // The salt only has to be unpredictable to clients; if the system RNG fails, a
        // clock-derived salt still keeps digests out of precomputed tables.
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            salt[..16].copy_from_slice(&t.to_le_bytes());
        }
        let parallel = std::thread::available_parallelism().map_or(1, |n| n.get());
        Credentials {
            decoy: map.values().next().map(|e| e.hash.clone()),
            users: map,
            salt,
            remembered: DashMap::new(),
            order: Mutex::new(VecDeque::new()),
            slots: Arc::new(Semaphore::new(parallel)),
        }
    }

    /// Checks one `Proxy-Authorization` header value.
    pub async fn check(&self, value: &HeaderValue) -> Result<Identified, Rejected> {
        let (user, password) = parse_basic(value).ok_or(Rejected::Malformed)?;
        let key = self.digest(&user, &password);
        if let Some(hit) = self.remembered.get(&key) {
            let (name, ministry) = hit.value().clone();
            return Ok(identified(name, ministry));
        }
        let (hash, entry) = match self.users.get(user.as_str()) {
            Some(e) => (e.hash.clone(), Some(e)),
            None => (self.decoy.clone().ok_or(Rejected::Wrong)?, None),
        };
        let slot = (self.slots.clone().acquire_owned().await).map_err(|_| Rejected::Wrong)?;
        let ok = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            verify_password(&hash, &password)
        })
        .await
        .unwrap_or(false);
        let entry = entry.filter(|_| ok).ok_or(Rejected::Wrong)?;
        self.remember(key, entry.name.clone(), entry.ministry);
        Ok(identified(entry.name.clone(), entry.ministry))
    }

    fn digest(&self, user: &str, password: &str) -> Digest {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.salt);
        ctx.update(user.as_bytes());
        ctx.update(&[0]);
        ctx.update(password.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn remember(&self, key: Digest, name: Arc<str>, ministry: MinistryId) {
        if self.remembered.insert(key, (name, ministry)).is_some() {
            return;
        }
        let mut order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        order.push_back(key);
        while order.len() > MAX_REMEMBERED {
            if let Some(old) = order.pop_front() {
                self.remembered.remove(&old);
            }
        }
    }

    /// Checks remembered (tests and metrics).
    pub fn remembered(&self) -> usize {
        self.remembered.len()
    }
}

fn identified(name: Arc<str>, ministry: MinistryId) -> Identified {
    Identified {
        ministry: Some(ministry),
        method: Method::Credentials,
        user: Some(name),
    }
}

/// `Basic base64(user:password)` → (user, password). The scheme is case-insensitive; the
/// decoded text must be UTF-8 and contain a colon; the user must not be empty.
pub fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let text = value.to_str().ok()?.trim();
    let (scheme, token) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    if user.is_empty() {
        return None;
    }
    Some((user.to_owned(), password.to_owned()))
}

/// Verifies `password` against an argon2 (`$argon2id$…`, `$argon2i$…`, `$argon2d$…`) or bcrypt
/// (`$2a$`, `$2b$`, `$2y$`) PHC string. Blocking and slow: call it under `spawn_blocking`.
pub fn verify_password(hash: &str, password: &str) -> bool {
    if hash.starts_with("$argon2") {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        return PasswordHash::new(hash).is_ok_and(|parsed| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
    }
    if hash.starts_with("$2") {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    false
}

/// Identifies the client of one request, in the order of the module docs. `Err` is the answer
/// to send instead (407, or 403 for Basic over plain text when that is not allowed).
pub async fn identify(
    headers: &HeaderMap,
    ctx: &ConnCtx,
    snap: &Snapshot,
) -> Result<Identified, Answer> {
    // 1. A verified client certificate that matches a pattern.
    if let Some(who) = (ctx.tls.as_ref()).and_then(|t| snap.identity.by_certificate(&t.cert_names))
    {
        return Ok(who);
    }
    // 2. Credentials, when configured.
    if let Some(creds) = &snap.credentials {
        let basic_usable = ctx.tls.is_some() || snap.settings.identity.allow_basic_over_plaintext;
        let mut values = headers.get_all(PROXY_AUTHORIZATION).iter();
        match (values.next(), values.next()) {
            (Some(_), _) if !basic_usable => return Err(respond::credentials_in_clear()),
            (Some(v), None) => {
                return creds.check(v).await.map_err(|why| {
                    tracing::debug!(peer = %ctx.peer, ?why, "proxy credentials refused");
                    respond::auth_required()
                })
            }
            // Two Proxy-Authorization headers: which one would a later hop believe?
            (Some(_), Some(_)) => return Err(respond::auth_required()),
            (None, _) => {
                if basic_usable && snap.identity.by_source(ctx.peer.ip()).is_none() {
                    return Err(respond::auth_required());
                }
            }
        }
    }
    // 3. Source CIDR, 4. default ministry (or nobody).
    Ok(snap.identity.identify(ctx.peer.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn basic_header_forms() {
        // "alice:s3cret:with:colons"
        let token = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:with:colons");
        assert_eq!(
            parse_basic(&hv(&format!("Basic {token}"))),
            Some(("alice".into(), "s3cret:with:colons".into()))
        );
        assert!(parse_basic(&hv(&format!("bAsIc  {token}"))).is_some());
        assert_eq!(parse_basic(&hv(&format!("Bearer {token}"))), None);
        assert_eq!(parse_basic(&hv("Basic !!!")), None);
        let no_colon = base64::engine::general_purpose::STANDARD.encode("alice");
        assert_eq!(parse_basic(&hv(&format!("Basic {no_colon}"))), None);
        let no_user = base64::engine::general_purpose::STANDARD.encode(":pw");
        assert_eq!(parse_basic(&hv(&format!("Basic {no_user}"))), None);
    }

    #[tokio::test]
    async fn checks_are_remembered_and_bounded() {
        use crate::policy::model::{Action, Mode};
        use crate::policy::tests as pt;
        let health = pt::ministry("health", Mode::Enforce, None, vec![]);
        let set = pt::set(pt::org(vec![], vec![], Action::Allow), vec![health], vec![]);
        let policy = Policy::compile(&set);
        let user = |name: &str, pw: &str| User {
            name: name.into(),
            password_hash: bcrypt::hash(pw, 4).unwrap(),
            ministry: "health".into(),
        };
        let creds = Credentials::build(&[user("alice", "pw-a"), user("bob", "pw-b")], &policy);
        let header = |u: &str, p: &str| {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            hv(&format!("Basic {token}"))
        };
        let who = creds.check(&header("alice", "pw-a")).await.unwrap();
        assert_eq!(who.method, Method::Credentials);
        assert_eq!(who.user.as_deref(), Some("alice"));
        assert_eq!(who.ministry, policy.ministry_id("health"));
        assert_eq!(creds.remembered(), 1);
        assert_eq!(creds.check(&header("alice", "pw-a")).await.unwrap(), who);
        // Another user's password, an unknown user, garbage: refused, never remembered.
        let wrong = creds.check(&header("alice", "pw-b")).await;
        assert_eq!(wrong.unwrap_err(), Rejected::Wrong);
        let unknown = creds.check(&header("carol", "pw-a")).await;
        assert_eq!(unknown.unwrap_err(), Rejected::Wrong);
        let garbage = creds.check(&hv("Basic ???")).await;
        assert_eq!(garbage.unwrap_err(), Rejected::Malformed);
        assert_eq!(creds.remembered(), 1);
        // The map is bounded: the oldest entries are forgotten.
        for i in 0..MAX_REMEMBERED + 10 {
            let key = creds.digest(&format!("u{i}"), "x");
            creds.remember(key, Arc::from("u"), who.ministry.unwrap());
        }
        assert_eq!(creds.remembered(), MAX_REMEMBERED);
        assert!(!creds
            .remembered
            .contains_key(&creds.digest("alice", "pw-a")));
    }

    #[test]
    fn argon2_and_bcrypt_hashes_verify() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let argon = argon2::Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password(&argon, "correct horse"));
        assert!(!verify_password(&argon, "correct horsE"));
        let bc = bcrypt::hash("battery staple", 4).unwrap();
        assert!(verify_password(&bc, "battery staple"));
        assert!(!verify_password(&bc, "battery stapl"));
        assert!(!verify_password("$argon2id$garbage", "x"));
        assert!(!verify_password("plain", "plain"));
    }
}
