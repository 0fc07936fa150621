//! Key files: ed25519 keys in the PEM files OpenSSL writes and reads.
//!
//! - Secret key: PKCS#8 (RFC 8410), `-----BEGIN PRIVATE KEY-----`, mode 0600 (a key readable by
//!   group or others is refused, as ssh does). `openssl genpkey -algorithm ed25519 -out tap.key`
//!   makes one as well as `tap key generate tap.key`.
//! - Public key: `SubjectPublicKeyInfo`, `-----BEGIN PUBLIC KEY-----` (`openssl pkey -in tap.key
//!   -pubout`).
//!
//! Both are read through [`read_bounded`]: at most [`MAX_KEY_FILE`] bytes, no symbolic link.

use std::{
    io,
    path::{Path, PathBuf},
};

use ed25519_dalek::pkcs8::{
    DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, EncodePublicKey as _,
    KeypairBytes, spki::der::pem::LineEnding,
};

/// Longest key file read, in bytes (a PEM ed25519 key is about 120).
pub(super) const MAX_KEY_FILE: u64 = 4096;

/// Errors of key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: crate::support::bounded_read::BoundedReadError,
    },
    #[error("the key file {path} is larger than {limit} bytes: not a key")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error(
        "the key file {path} is readable by others (mode {mode:04o}): `chmod 600 {path}` first"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{path} is not an ed25519 {what} in PEM ({reason})")]
    Format {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("cannot get random bytes for a key: {0}")]
    Random(#[source] io::Error),
    #[error("writing the key: {0}")]
    Create(#[source] crate::support::safe_create::CreateError),
    #[error("writing the key {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Reads a key file whole through the one bounded reader: at most `limit` bytes, refusing a
/// symbolic link at `path` and a file that is not regular. Returns the bytes and the file's
/// permission bits.
///
/// # Errors
/// The file cannot be opened or read, is not regular, or holds more than `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> Result<(Vec<u8>, u32), KeyError> {
    use crate::support::bounded_read::{self, BoundedReadError, Links};
    bounded_read::read(path, limit, Links::Refuse).map_err(|e| match e {
        BoundedReadError::TooLarge { .. } | BoundedReadError::Grew { .. } => KeyError::TooLarge {
            path: path.to_path_buf(),
            limit,
        },
        source => KeyError::Read {
            path: path.to_path_buf(),
            source,
        },
    })
}

fn pem_text(path: &Path, bytes: Vec<u8>, what: &'static str) -> Result<String, KeyError> {
    String::from_utf8(bytes).map_err(|_| KeyError::Format {
        path: path.to_path_buf(),
        what,
        reason: "not text".into(),
    })
}

/// An ed25519 signing key (zeroed when dropped, each clone too).
#[derive(Clone)]
pub struct SecretKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(public {})", self.public_hex())
    }
}

impl SecretKey {
    /// Reads a PKCS#8 PEM secret key (see the module notes), refusing one others can read.
    ///
    /// # Errors
    /// As [`read_bounded`]; a file group or others may read; a file that is not such a key.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        const WHAT: &str = "secret key";
        let (bytes, mode) = read_bounded(path, MAX_KEY_FILE)?;
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = zeroize::Zeroizing::new(pem_text(path, bytes, WHAT)?);
        ed25519_dalek::SigningKey::from_pkcs8_pem(text.trim())
            .map(Self)
            .map_err(|e| KeyError::Format {
                path: path.to_path_buf(),
                what: WHAT,
                reason: e.to_string(),
            })
    }

    /// A new key from the kernel's random source.
    ///
    /// # Errors
    /// `getrandom` fails.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        let mut filled = 0;
        while filled < seed.len() {
            // SAFETY: the pointer and length describe the unfilled part of `seed`.
            let n = unsafe {
                libc::getrandom(seed[filled..].as_mut_ptr().cast(), seed.len() - filled, 0)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(KeyError::Random(e));
                }
                continue;
            }
            filled += usize::try_from(n).unwrap_or(0);
        }
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    pub(super) fn key(&self) -> &ed25519_dalek::SigningKey {
        &self.0
    }

    /// The public half.
    #[must_use]
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The public key as 64 hex digits (as entries name it).
    #[must_use]
    pub fn public_hex(&self) -> String {
        self.public().to_hex()
    }

    /// The PKCS#8 v1 PEM text (the secret only, as OpenSSL writes it).
    fn to_pem(&self) -> Result<zeroize::Zeroizing<String>, String> {
        KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| e.to_string())
    }
}

/// An ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// Reads a `SubjectPublicKeyInfo` PEM public key.
    ///
    /// # Errors
    /// As [`read_bounded`], and a file that is not such a key.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        const WHAT: &str = "public key";
        let (bytes, _) = read_bounded(path, MAX_KEY_FILE)?;
        let text = pem_text(path, bytes, WHAT)?;
        ed25519_dalek::VerifyingKey::from_public_key_pem(text.trim())
            .map(Self)
            .map_err(|e| KeyError::Format {
                path: path.to_path_buf(),
                what: WHAT,
                reason: e.to_string(),
            })
    }

    /// 64 hex digits.
    #[must_use]
    pub fn to_hex(&self) -> String {
        super::hex(self.0.as_bytes())
    }

    fn to_pem(self) -> Result<String, String> {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| e.to_string())
    }
}

/// Writes a new key pair: the secret key at `secret` (0600) and the public key at `public`
/// (0600 too; hand out copies as needed). Neither file may exist. Returns the public key.
///
/// # Errors
/// Either file exists (or is a symbolic link), cannot be written, or no random bytes.
pub fn generate_key_pair(secret: &Path, public: &Path) -> Result<PublicKey, KeyError> {
    let key = SecretKey::generate()?;
    let format = |reason: String, path: &Path, what| KeyError::Format {
        path: path.to_path_buf(),
        what,
        reason,
    };
    let secret_pem = key.to_pem().map_err(|r| format(r, secret, "secret key"))?;
    let public_pem = key
        .public()
        .to_pem()
        .map_err(|r| format(r, public, "public key"))?;
    // Both names are checked free before either is written.
    for path in [secret, public] {
        crate::support::safe_create::check_target(path, false).map_err(KeyError::Create)?;
    }
    write_new(secret, secret_pem.as_bytes())?;
    write_new(public, public_pem.as_bytes())?;
    Ok(key.public())
}

/// Creates `path` (0600, `O_EXCL`, no symbolic link) holding `data`, synced.
fn write_new(path: &Path, data: &[u8]) -> Result<(), KeyError> {
    use std::io::Write as _;
    let mut file = crate::support::safe_create::create(path, false).map_err(KeyError::Create)?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyError::Write {
            path: path.to_path_buf(),
            source,
        })
}
