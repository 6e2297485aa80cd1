//! BYOK (bring your own key): an org's own provider keys, sealed at rest with AES-256-GCM under
//! the gateway's master key. This file is the crypto — loading the master key (an env var or a
//! private file), sealing and opening — plus the org's BYOK mode; `cache.rs` is the short-lived
//! decrypted cache the request path reads, `cli.rs` the `tollgate byok` commands.
//!
//! Each ciphertext is bound to its row: the AEAD's associated data is the org id, the provider
//! name and the credential id, so a ciphertext copied to another row or org does not open. Each
//! row also records the id of the master key that sealed it (the first 16 hex digits of the
//! key's SHA-256), so a row sealed under another master is reported as such rather than as
//! corruption. Plaintext keys live in `zeroize`-ing buffers and never appear in Debug output.

mod cache;
pub mod cli;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub use crate::config::ByokSettings;
use crate::store::StoreError;

pub use cache::{ByokKeys, OrgKeys, DEFAULT_TTL};

/// Longest provider key accepted (real ones are well under 1 KiB).
pub const MAX_SECRET_BYTES: usize = 4096;

/// Domain separation for the associated data: a future format gets a new tag.
const AAD_TAG: &[u8] = b"tollgate-byok-v1";

#[derive(Debug, thiserror::Error)]
pub enum ByokError {
    #[error(
        "no BYOK master key: set {env} (32 bytes as base64 or 64 hex digits) or \
         byok.master_key_file in the config"
    )]
    NoMasterKey { env: String },
    #[error("BYOK master key from {from}: {why}")]
    BadMasterKey { from: String, why: &'static str },
    #[error("reading the BYOK master key file {path}: {source}")]
    MasterKeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the BYOK master key file {path} is readable by group or others (mode {mode:o}): \
         run `chmod 600 {path}`"
    )]
    MasterKeyFileOpen { path: PathBuf, mode: u32 },
    #[error(
        "this provider key was sealed under master key {sealed_under}, but the loaded master \
         key is {loaded}: load the right master key (or finish `tollgate byok rotate-master`)"
    )]
    WrongMaster {
        sealed_under: String,
        loaded: String,
    },
    #[error(
        "a stored provider key does not open: its ciphertext was altered or moved from \
         another row"
    )]
    Open,
    #[error("sealing a provider key failed")]
    Seal,
    #[error("invalid provider key: {0}")]
    BadSecret(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The org's choice between its own keys and the gateway's, for providers it has a key for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ByokMode {
    /// The org's key first, then the gateway's own key for that route.
    #[default]
    Prefer,
    /// The gateway's key first; the org's key when that attempt fails.
    Fallback,
    /// Only the org's key is ever used for providers it has a key for.
    Only,
}

impl ByokMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ByokMode::Prefer => "prefer",
            ByokMode::Fallback => "fallback",
            ByokMode::Only => "only",
        }
    }

    pub fn parse(s: &str) -> Option<ByokMode> {
        Some(match s {
            "prefer" => ByokMode::Prefer,
            "fallback" => ByokMode::Fallback,
            "only" => ByokMode::Only,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ByokMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The credits charged for a BYOK request that would have cost `cost_micros` on the gateway's
/// key: `cost × percent / 100`, rounded up so a non-zero fee never rounds to nothing.
pub fn fee_micros(cost_micros: i64, fee_percent: f64) -> i64 {
    if cost_micros <= 0 || fee_percent.is_nan() || fee_percent <= 0.0 {
        return 0;
    }
    ((cost_micros as f64) * fee_percent / 100.0).ceil() as i64
}

/// A decrypted provider key. Cloning shares one zeroized-on-drop buffer; Debug never shows it.
#[derive(Clone)]
pub struct Secret(Arc<Zeroizing<String>>);

impl Secret {
    /// The key, for the host to put into the upstream request's auth header and nowhere else.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A provider key as stored: AES-256-GCM ciphertext (with its tag) and nonce, base64, and the
/// master key and row it was sealed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The `provider_credentials.id` this ciphertext is bound to.
    pub credential_id: String,
    pub ciphertext: String,
    pub nonce: String,
    pub master_key_id: String,
}

/// A fresh credential id (part of the associated data, so it is chosen before sealing).
pub fn new_credential_id() -> String {
    crate::store::new_id("pk")
}

/// Checks a provider key before it is sealed: it goes into an HTTP header, so printable ASCII
/// without spaces.
pub fn check_secret(secret: &str) -> Result<(), ByokError> {
    if secret.is_empty() {
        return Err(ByokError::BadSecret("it is empty"));
    }
    if secret.len() > MAX_SECRET_BYTES {
        return Err(ByokError::BadSecret("it is longer than 4096 bytes"));
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ByokError::BadSecret(
            "it must be printable ASCII without spaces (it is sent in an HTTP header)",
        ));
    }
    Ok(())
}

/// The gateway's master key: an AES-256-GCM cipher and the key's id. The raw bytes are not
/// kept (the cipher's expanded key is zeroized on drop).
pub struct MasterKey {
    cipher: Aes256Gcm,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

fn aad(org_id: &str, provider: &str, credential_id: &str) -> Vec<u8> {
    // Length-prefixed fields, so ("a", "bc") and ("ab", "c") never give the same bytes.
    let mut out = AAD_TAG.to_vec();
    for part in [org_id, provider, credential_id] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

impl MasterKey {
    /// A master key from its 32 raw bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> MasterKey {
        let id = hex::encode(Sha256::digest(bytes))[..16].to_string();
        MasterKey {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)),
            id,
        }
    }

    /// A master key written as base64 or as 64 hex digits (surrounding whitespace ignored).
    /// `from` names the source in errors; the value itself is never part of one.
    pub fn parse(text: &str, from: &str) -> Result<MasterKey, ByokError> {
        let bad = |why| ByokError::BadMasterKey {
            from: from.to_string(),
            why,
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        let raw: Zeroizing<Vec<u8>> =
            if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                Zeroizing::new(hex::decode(text).map_err(|_| bad("invalid hex"))?)
            } else {
                let decoded = STANDARD
                    .decode(text)
                    .or_else(|_| STANDARD_NO_PAD.decode(text))
                    .map_err(|_| bad("neither 64 hex digits nor base64"))?;
                Zeroizing::new(decoded)
            };
        let bytes: &[u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| bad("it must be exactly 32 bytes"))?;
        Ok(MasterKey::from_bytes(bytes))
    }

    /// Reads a master key file, refusing one that group or others may read.
    pub fn from_file(path: &Path) -> Result<MasterKey, ByokError> {
        use std::io::Read;
        let io = |source| ByokError::MasterKeyFile {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        // The mode of the file actually opened (not of the path, which could change between).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file.metadata().map_err(io)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(ByokError::MasterKeyFileOpen {
                    path: path.to_path_buf(),
                    mode: mode & 0o777,
                });
            }
        }
        let mut text = Zeroizing::new(String::new());
        // A key is under 100 bytes; reading more than a few KiB means a wrong file.
        (&mut file)
            .take(4096)
            .read_to_string(&mut text)
            .map_err(io)?;
        MasterKey::parse(&text, &path.display().to_string())
    }

    /// The configured master key: the env var when set and non-empty, else the file when one
    /// is configured, else None.
    pub fn load(settings: &ByokSettings) -> Result<Option<MasterKey>, ByokError> {
        if let Ok(value) = std::env::var(&settings.master_key_env) {
            let value = Zeroizing::new(value);
            if !value.trim().is_empty() {
                return MasterKey::parse(&value, &settings.master_key_env).map(Some);
            }
        }
        match &settings.master_key_file {
            Some(path) => MasterKey::from_file(path).map(Some),
            None => Ok(None),
        }
    }

    /// The configured master key, or an error saying how to provide one.
    pub fn require(settings: &ByokSettings) -> Result<MasterKey, ByokError> {
        MasterKey::load(settings)?.ok_or_else(|| ByokError::NoMasterKey {
            env: settings.master_key_env.clone(),
        })
    }

    /// First 16 hex digits of the key's SHA-256: stored with each row it seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `secret` for the row (`org_id`, `provider`, `credential_id`) with a fresh random
    /// 96-bit nonce.
    pub fn seal(
        &self,
        org_id: &str,
        provider: &str,
        credential_id: &str,
        secret: &str,
    ) -> Result<Sealed, ByokError> {
        check_secret(secret)?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = aad(org_id, provider, credential_id);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| ByokError::Seal)?;
        Ok(Sealed {
            credential_id: credential_id.to_string(),
            ciphertext: STANDARD.encode(ciphertext),
            nonce: STANDARD.encode(nonce),
            master_key_id: self.id.clone(),
        })
    }

    /// Opens a row's ciphertext: fails when it was sealed under another master key, altered,
    /// or belongs to another row (org, provider or credential id).
    pub fn open(&self, org_id: &str, provider: &str, sealed: &Sealed) -> Result<Secret, ByokError> {
        if sealed.master_key_id != self.id {
            return Err(ByokError::WrongMaster {
                sealed_under: sealed.master_key_id.clone(),
                loaded: self.id.clone(),
            });
        }
        let nonce = STANDARD
            .decode(&sealed.nonce)
            .map_err(|_| ByokError::Open)?;
        if nonce.len() != 12 {
            return Err(ByokError::Open);
        }
        let ciphertext = STANDARD
            .decode(&sealed.ciphertext)
            .map_err(|_| ByokError::Open)?;
        let aad = aad(org_id, provider, &sealed.credential_id);
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: &ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| ByokError::Open)?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| ByokError::Open)?;
        Ok(Secret(Arc::new(Zeroizing::new(text.to_string()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes(&[byte; 32])
    }

    #[test]
    fn parses_hex_and_base64_and_refuses_other_lengths() {
        let hex_form = hex::encode([7u8; 32]);
        let b64 = STANDARD.encode([7u8; 32]);
        let a = MasterKey::parse(&hex_form, "t").unwrap();
        let b = MasterKey::parse(&format!(" {b64}\n"), "t").unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(a.id().len(), 16);
        assert_ne!(a.id(), key(8).id());
        assert!(MasterKey::parse(&STANDARD.encode([7u8; 31]), "t").is_err());
        assert!(MasterKey::parse("not a key!", "t").is_err());
        assert!(MasterKey::parse("", "t").is_err());
        // The error names the source, never the value.
        let err = MasterKey::parse(&STANDARD.encode([9u8; 16]), "ENV").unwrap_err();
        assert!(err.to_string().contains("ENV"));
        assert!(!err.to_string().contains(&STANDARD.encode([9u8; 16])));
    }

    #[test]
    fn nonces_are_fresh_and_debug_hides_the_secret() {
        let k = key(1);
        let a = k.seal("org_a", "openai", "pk_1", "sk-secret-1").unwrap();
        let b = k.seal("org_a", "openai", "pk_1", "sk-secret-1").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        let opened = k.open("org_a", "openai", &a).unwrap();
        assert_eq!(opened.expose(), "sk-secret-1");
        assert!(!format!("{opened:?} {k:?}").contains("sk-secret-1"));
    }

    #[test]
    fn secrets_must_fit_a_header() {
        let k = key(1);
        for bad in ["", "sk with space", "sk-\u{e9}", "sk\n"] {
            assert!(k.seal("o", "p", "c", bad).is_err(), "{bad:?}");
        }
        assert!(k.seal("o", "p", "c", &"x".repeat(4097)).is_err());
    }

    #[test]
    fn fee_is_a_percent_of_the_cost_rounded_up() {
        assert_eq!(fee_micros(1_000, 0.0), 0);
        assert_eq!(fee_micros(1_000, 5.0), 50);
        assert_eq!(fee_micros(1, 5.0), 1);
        assert_eq!(fee_micros(0, 5.0), 0);
        assert_eq!(fee_micros(1_000, f64::NAN), 0);
    }
}
