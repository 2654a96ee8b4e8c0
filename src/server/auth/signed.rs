//! Signed session cookies: `<nonce>.<expires>.<role>.<user, hex>.<HMAC-SHA256, hex>`. The
//! sessions table stores the SHA-256 of the whole value and decides while the state database
//! answers; the signature lets a replica recognise the session while it does not.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::api::auth::Role;

type HmacSha256 = Hmac<Sha256>;

pub struct Signer {
    key: Vec<u8>,
}

/// What a valid cookie says.
#[derive(Debug, PartialEq)]
pub struct Signed {
    pub user: String,
    pub role: Role,
    /// When it expires (seconds since the epoch).
    pub expires: i64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

impl Signer {
    pub fn new(key: &[u8]) -> Signer {
        Signer { key: key.to_vec() }
    }

    /// A key of this process's own.
    pub fn random() -> Signer {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        Signer::new(&key)
    }

    fn mac(&self, body: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(body.as_bytes());
        mac
    }

    /// A new session's cookie value for `user` with `role`, valid until `expires` (Unix seconds).
    pub fn sign(&self, user: &str, role: Role, expires: i64) -> String {
        let mut nonce = [0u8; 16];
        OsRng.fill_bytes(&mut nonce);
        let body = format!("{}.{expires}.{}.{}", hex(&nonce), role.as_str(), hex(user.as_bytes()));
        let tag = hex(&self.mac(&body).finalize().into_bytes());
        format!("{body}.{tag}")
    }

    /// What `token` says, if it carries our signature and has not expired at `now`.
    pub fn check(&self, token: &str, now: i64) -> Option<Signed> {
        let (body, tag) = token.rsplit_once('.')?;
        self.mac(body).verify_slice(&unhex(tag)?).ok()?;
        let mut parts = body.split('.');
        let (_nonce, expires, role, user) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let expires = expires.parse::<i64>().ok()?;
        if parts.next().is_some() || expires <= now {
            return None;
        }
        Some(Signed { user: String::from_utf8(unhex(user)?).ok()?, role: Role::parse(role)?, expires })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_ours_unexpired_and_unaltered_or_nothing() {
        let s = Signer::new(b"key one");
        let t = s.sign("ana.o'neil", Role::Operator, 2_000);
        assert_eq!(
            s.check(&t, 1_999),
            Some(Signed { user: "ana.o'neil".into(), role: Role::Operator, expires: 2_000 })
        );
        assert_eq!(s.check(&t, 2_000), None, "expired");
        assert_eq!(Signer::new(b"key two").check(&t, 1_000), None, "another key's");
        // Any change to what it says breaks the signature: a viewer cannot make itself an operator.
        let v = s.sign("bo", Role::Viewer, 2_000);
        assert_eq!(s.check(&v.replace(".viewer.", ".operator."), 1_000), None);
        let later = v.replacen(".2000.", ".9999.", 1);
        assert_eq!(s.check(&later, 1_000), None);
        for bad in ["", "abc", "a.b.c.d.e", "...", &format!("{t}.x"), &t[..t.len() - 2]] {
            assert_eq!(s.check(bad, 1_000), None, "{bad:?}");
        }
        // Two sessions of the same user are two cookies.
        assert_ne!(s.sign("bo", Role::Viewer, 2_000), v);
    }
}
