//! Bearer-token authentication of every API call.
//!
//! Tokens are compared as SHA-256 digests in constant time, so neither the content nor the
//! length of a valid token leaks through timing. A refused call learns only that it was refused.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("reading tokens file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tokens file {path} holds no token; write one token per line")]
    Empty { path: PathBuf },
    #[error("tokens file {path}, line {line}: a token must be at least 16 characters")]
    TooShort { path: PathBuf, line: usize },
}

/// The accepted tokens, as digests only. Clones share them: [`Tokens::replace`] (a reload of
/// the file) changes what every clone, and so every interceptor, accepts from its next call.
#[derive(Clone)]
pub struct Tokens {
    digests: Arc<RwLock<Arc<Vec<[u8; 32]>>>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} accepted)", self.current().len())
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// One token per line; blank lines and lines starting with '#' are ignored.
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut digests = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if t.len() < 16 {
                return Err(TokensError::TooShort {
                    path: path.to_owned(),
                    line: i + 1,
                });
            }
            digests.push(digest(t));
        }
        if digests.is_empty() {
            return Err(TokensError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Self {
            digests: Arc::new(RwLock::new(Arc::new(digests))),
        })
    }

    fn current(&self) -> Arc<Vec<[u8; 32]>> {
        match self.digests.read() {
            Ok(d) => d.clone(),
            // A panic while swapping cannot leave a half-written Arc: the value is whole.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Accepts what `fresh` accepts from now on (and nothing else), in this and every clone.
    pub fn replace(&self, fresh: &Tokens) {
        let new = fresh.current();
        match self.digests.write() {
            Ok(mut d) => *d = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    /// How many tokens are accepted.
    pub fn len(&self) -> usize {
        self.current().len()
    }

    /// Never true: a tokens file without a token is refused when read.
    pub fn is_empty(&self) -> bool {
        self.current().is_empty()
    }

    pub fn accepts(&self, presented: &str) -> bool {
        let d = digest(presented);
        // Visit every digest so timing does not reveal which one matched.
        self.current()
            .iter()
            .fold(subtle::Choice::from(0), |acc, known| acc | known.ct_eq(&d))
            .into()
    }

    /// A tonic interceptor that refuses calls without an accepted `authorization: Bearer` token.
    pub fn interceptor(self) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
        move |req: Request<()>| {
            let presented = req
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            match presented {
                Some(t) if self.accepts(t.trim()) => Ok(req),
                Some(_) => Err(Status::unauthenticated("the bearer token is not accepted by kamajid")),
                None => Err(Status::unauthenticated(
                    "missing bearer token: send 'authorization: Bearer <token>' (provider attribute token or KAMAJI_TOKEN)",
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Result<Tokens, TokensError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens");
        std::fs::write(&p, text).unwrap();
        Tokens::load(&p)
    }

    #[test]
    fn only_listed_tokens_pass() {
        let t = tokens("# operators\nfirst-token-0123456789\n\nsecond-token-0123456789\n").unwrap();
        assert!(t.accepts("first-token-0123456789"));
        assert!(t.accepts("second-token-0123456789"));
        assert!(!t.accepts("first-token-012345678"));
        assert!(!t.accepts(""));
    }

    #[test]
    fn interceptor_refuses_missing_and_wrong_tokens() {
        let mut i = tokens("first-token-0123456789").unwrap().interceptor();
        assert_eq!(
            i(Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let mut wrong = Request::new(());
        wrong.metadata_mut().insert(
            "authorization",
            "Bearer nope-nope-nope-nope".parse().unwrap(),
        );
        let err = i(wrong).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(!err.message().contains("nope"));
        let mut good = Request::new(());
        good.metadata_mut().insert(
            "authorization",
            "Bearer first-token-0123456789".parse().unwrap(),
        );
        assert!(i(good).is_ok());
    }

    #[test]
    fn a_replaced_set_applies_to_every_clone_at_once() {
        let t = tokens("first-token-0123456789").unwrap();
        let mut i = t.clone().interceptor();
        t.replace(&tokens("second-token-0123456789").unwrap());
        let mut old = Request::new(());
        old.metadata_mut().insert(
            "authorization",
            "Bearer first-token-0123456789".parse().unwrap(),
        );
        assert!(i(old).is_err());
        assert!(t.accepts("second-token-0123456789"));
    }

    #[test]
    fn empty_or_short_token_files_are_refused() {
        assert!(matches!(
            tokens("# nothing\n"),
            Err(TokensError::Empty { .. })
        ));
        assert!(matches!(
            tokens("short\n"),
            Err(TokensError::TooShort { line: 1, .. })
        ));
    }
}
