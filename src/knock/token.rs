//! Knock tokens: what `knock-user add` prints once and the user types on the page.
//!
//! A token is `<user>.<secret>`: the user's name, so the page needs a single field, then 26
//! characters of a 32-letter alphabet without look-alikes (130 bits from the operating
//! system's CSPRNG, `OsRng`). Only an argon2id hash of the secret is stored (a PHC string with
//! its own random salt and the crate's default cost); [`Verifier::verify`] compares in constant
//! time (argon2's own comparison), and for a user that does not exist it verifies against a
//! dummy hash of the same cost, so an unknown user and a wrong secret take the same time.

use std::fmt;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// The secret's alphabet: lower-case letters and digits without `l`, `o`, `0`, `1`.
const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
/// Characters of a secret (5 bits each).
pub const SECRET_LEN: usize = 26;
/// Longest user name.
pub const MAX_NAME: usize = 32;

/// Why a token or name was refused, or hashing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a valid user name.
    #[error(
        "not a knock user name: {0:?} (1 to 32 of a-z, 0-9, '-' and '_', starting with a letter \
         or digit)"
    )]
    BadName(String),
    /// argon2 refused to hash (it does not, with its default parameters).
    #[error("cannot hash the token: {0}")]
    Hash(String),
}

/// A knock user's name: 1 to [`MAX_NAME`] of `a-z`, `0-9`, `-`, `_`, starting with a letter or
/// digit (so it never holds the `.` that ends it in a token, nor anything a log or page would
/// need to escape).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

impl UserName {
    /// Parses a name as given (not lower-cased: `Alice` is refused, not silently changed).
    pub fn parse(s: &str) -> Result<UserName, TokenError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_NAME
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(UserName(s.to_owned()))
        } else {
            Err(TokenError::BadName(s.chars().take(64).collect()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A token: user and secret. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    user: UserName,
    secret: String,
}

impl Token {
    /// A new random token for `user`.
    pub fn generate(user: UserName) -> Token {
        let mut bytes = [0u8; SECRET_LEN];
        OsRng.fill_bytes(&mut bytes);
        let secret = bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
            .collect();
        Token { user, secret }
    }

    /// The token as typed: surrounding blanks are ignored and the secret's letters may be
    /// upper-case (a phone's keyboard capitalises). `None` unless it is `<name>.<secret>`.
    pub fn parse(typed: &str) -> Option<Token> {
        let (name, secret) = typed.trim().split_once('.')?;
        let user = UserName::parse(name).ok()?;
        let secret = secret.to_ascii_lowercase();
        let ok = secret.len() == SECRET_LEN && secret.bytes().all(|b| ALPHABET.contains(&b));
        ok.then_some(Token { user, secret })
    }

    /// The user the token names.
    pub fn user(&self) -> &UserName {
        &self.user
    }

    /// The secret (what the stored hash is of).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The whole token, `alice.<secret>`, for printing once to the admin.
    pub fn reveal(&self) -> String {
        format!("{}.{}", self.user, self.secret)
    }

    /// The argon2id PHC string of the secret, with a fresh random salt.
    pub fn hash(&self) -> Result<String, TokenError> {
        hash_secret(&self.secret)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("user", &self.user)
            .field("secret", &"***")
            .finish()
    }
}

/// The user name a typed token claims, if its name part is a valid name (for the per-user
/// rate limit, which applies whether or not the user exists).
pub fn claimed_user(typed: &str) -> Option<UserName> {
    let (name, _) = typed.trim().split_once('.')?;
    UserName::parse(name).ok()
}

fn hash_secret(secret: &str) -> Result<String, TokenError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| TokenError::Hash(e.to_string()))
}

/// Verifies secrets against stored hashes, and against a dummy hash of the same cost when
/// there is no stored one.
#[derive(Debug, Clone)]
pub struct Verifier {
    dummy: String,
}

impl Verifier {
    /// A verifier with a fresh dummy hash (one argon2 hash: run it off the async runtime).
    pub fn new() -> Result<Verifier, TokenError> {
        let dummy = Token::generate(UserName("dummy".to_owned()));
        Ok(Verifier {
            dummy: dummy.hash()?,
        })
    }

    /// Whether `secret` matches `stored` (a PHC string). With no stored hash, or no secret (a
    /// malformed token), the dummy hash is verified all the same and the answer is `false`,
    /// so every refusal costs one argon2 verification. Slow on purpose: call it on a blocking
    /// thread.
    pub fn verify(&self, secret: Option<&str>, stored: Option<&str>) -> bool {
        // A stored hash that does not parse counts as none (refused after the dummy's time).
        let stored = stored.and_then(|s| PasswordHash::new(s).ok());
        let real = secret.is_some() && stored.is_some();
        let against = match stored {
            Some(p) => p,
            None => match PasswordHash::new(&self.dummy) {
                Ok(p) => p,
                Err(_) => return false,
            },
        };
        let matched = Argon2::default()
            .verify_password(secret.unwrap_or("").as_bytes(), &against)
            .is_ok();
        real && matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["alice", "a", "bob-2", "x_y", "0day"] {
            assert!(UserName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Alice", "a.b", "-a", "_a", "a b", "é", &"a".repeat(33)] {
            assert!(UserName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_token_round_trips_and_verifies_only_with_its_own_hash() {
        let t = Token::generate(UserName::parse("alice").unwrap());
        let typed = t.reveal();
        assert!(typed.starts_with("alice."));
        assert_eq!(typed.len(), "alice.".len() + SECRET_LEN);
        assert_eq!(Token::parse(&typed), Some(t.clone()));
        // A phone capitalises; blanks around are ignored.
        assert_eq!(
            Token::parse(&format!("  alice.{} ", t.secret().to_uppercase())),
            Some(t.clone())
        );
        let other = Token::generate(UserName::parse("alice").unwrap());
        assert_ne!(t.secret(), other.secret(), "two draws differ");
        let hash = t.hash().unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains(t.secret()));
        let v = Verifier::new().unwrap();
        assert!(v.verify(Some(t.secret()), Some(&hash)));
        assert!(!v.verify(Some(other.secret()), Some(&hash)));
        assert!(!v.verify(Some(t.secret()), None), "no user: refused");
        assert!(!v.verify(None, Some(&hash)), "malformed token: refused");
        assert!(!v.verify(Some(t.secret()), Some("not a phc string")));
        // The same secret hashes differently each time (salted).
        assert_ne!(t.hash().unwrap(), hash);
        assert!(!format!("{t:?}").contains(t.secret()));
    }

    #[test]
    fn malformed_tokens_are_none() {
        let secret = "a".repeat(SECRET_LEN);
        assert!(Token::parse(&format!("alice.{secret}")).is_some());
        for bad in [
            String::new(),
            "alice".to_owned(),
            format!("alice.{}", &secret[1..]),
            format!("alice.{secret}x"),
            format!("alice.{}0", &secret[1..]),
            format!("Alice.{secret}"),
            format!(".{secret}"),
        ] {
            assert!(Token::parse(&bad).is_none(), "{bad:?}");
        }
        assert_eq!(
            claimed_user("bob.whatever").map(|u| u.to_string()),
            Some("bob".to_owned())
        );
        assert_eq!(claimed_user("nodot"), None);
    }
}
