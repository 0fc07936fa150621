//! `tap verify` and `tap key`: their arguments and what they do, for the binary to dispatch.

use std::path::{Path, PathBuf};

use super::{
    Custody, CustodyError, KeyError, MANIFEST_NAME, PublicKey, SecretKey, generate_key_pair,
    verify::{Verdict, VerifyError, verify_dir},
};

/// `tap key`: ed25519 keys for signing manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCommand {
    /// Write a new key pair: FILE (the secret key, PKCS#8 PEM, mode 0600) and FILE.pub (the
    /// public key, `SubjectPublicKeyInfo` PEM). Existing files are never replaced. OpenSSL makes
    /// and reads the same files (`openssl genpkey -algorithm ed25519`).
    Generate {
        secret: PathBuf,
        /// Where the public key goes (default: FILE.pub).
        public: Option<PathBuf>,
    },
    /// Sign DIR's manifest head now: appends a `seal` entry signed with the key, so `tap verify
    /// --public-key` can show nobody changed the directory since.
    Sign {
        /// The secret key (PEM, mode 0600).
        sign_key: PathBuf,
        dir: PathBuf,
    },
}

/// Errors of the two commands.
#[derive(Debug, thiserror::Error)]
pub enum CustodyCliError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Custody(#[from] CustodyError),
    #[error("{dir}: no {MANIFEST_NAME} to sign (nothing was recorded there)")]
    NothingToSign { dir: PathBuf },
}

/// What a command reports: one line, and whether it is a success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub line: String,
    pub ok: bool,
}

/// `tap verify`.
///
/// # Errors
/// The public key cannot be read, or the directory cannot be checked at all (no manifest, an
/// unreadable file). A broken chain is an [`Outcome`] that is not `ok`.
pub fn verify(dir: &Path, public_key: Option<&Path>) -> Result<Outcome, CustodyCliError> {
    let trusted = public_key.map(PublicKey::load).transpose()?;
    Ok(match verify_dir(dir, trusted.as_ref())? {
        Verdict::Intact(i) => Outcome {
            line: i.to_string(),
            ok: true,
        },
        Verdict::Broken(b) => Outcome {
            line: b.to_string(),
            ok: false,
        },
    })
}

/// `tap key ...`.
///
/// # Errors
/// Key files that cannot be written or read; a directory without a manifest; the append fails.
pub fn key(command: &KeyCommand) -> Result<Outcome, CustodyCliError> {
    match command {
        KeyCommand::Generate { secret, public } => {
            let public = public.clone().unwrap_or_else(|| {
                let mut p = secret.clone().into_os_string();
                p.push(".pub");
                PathBuf::from(p)
            });
            let key = generate_key_pair(secret, &public)?;
            Ok(Outcome {
                line: format!(
                    "wrote {} (secret) and {} (public key {})",
                    secret.display(),
                    public.display(),
                    key.to_hex()
                ),
                ok: true,
            })
        }
        KeyCommand::Sign { sign_key, dir } => {
            let key = SecretKey::load(sign_key)?;
            if !dir.join(MANIFEST_NAME).exists() {
                return Err(CustodyCliError::NothingToSign { dir: dir.clone() });
            }
            let entry = Custody::open(dir, Some(key))?.seal()?;
            Ok(Outcome {
                line: format!(
                    "{}: sealed at entry {}, head {}",
                    dir.display(),
                    entry.seq,
                    entry.hash
                ),
                ok: true,
            })
        }
    }
}
