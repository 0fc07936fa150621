//! The agent's packet store and its HTTP query endpoint in the configuration file:
//!
//! ```toml
//! [agent]
//! query_listen = "127.0.0.1:9751"             # off unless given
//! query_token_file = "/etc/tap/query.token"   # required unless query_listen is loopback
//!
//! [tap.store]                                 # instead of [tap.file]
//! dir = "/var/lib/tap/store"
//! max_bytes = "500G"                          # or a number of bytes
//! max_age = "7d"
//! compress = "zstd"
//! file_size_mb = 1000
//! rotate_seconds = 60
//! ```
//!
//! The store is validated by the rules of `tap capture --store` ([`StoreConfig::from_args`],
//! [`StoreConfig::output`]); only the error locations are this file's.

use std::{
    net::SocketAddr,
    ops::Range,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

use super::{AgentConfigError, Source};
use crate::{
    cli::DiskFullArg,
    config::OutputConfig,
    excerpt,
    store::{StoreConfig, StoreError, cli::StoreArgs},
};

/// `[tap.store]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStoreSink {
    dir: Spanned<PathBuf>,
    max_bytes: Option<Spanned<RawSize>>,
    max_age: Option<Spanned<String>>,
    compress: Option<Spanned<String>>,
    file_size_mb: Option<Spanned<f64>>,
    rotate_seconds: Option<Spanned<u64>>,
    flush_interval_ms: Option<Spanned<u64>>,
}

/// A size: bytes, or text with a K, M, G or T suffix (powers of 1024), as `--store-max-bytes`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

/// The agent's query endpoint, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct QueryListen {
    /// Where to listen (TCP).
    pub addr: SocketAddr,
    /// The bearer token clients must send (`Authorization: Bearer TOKEN`); `None`: none asked
    /// (only on a loopback address).
    pub token: Option<String>,
    /// The file the token came from.
    pub token_file: Option<PathBuf>,
}

impl std::fmt::Debug for QueryListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryListen")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "(secret)"))
            .field("token_file", &self.token_file)
            .finish()
    }
}

/// Whether `addr` only accepts connections from this machine.
#[must_use]
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// `agent.query_listen` and `agent.query_token_file`: the address parses, a token file is given
/// unless the address is loopback, and the file is one only its owner may read (mode 0600 or
/// 0400), of one line of visible ASCII.
pub(super) fn query_listen(
    src: &Source<'_>,
    listen: Option<&Spanned<String>>,
    token_file: Option<&Spanned<PathBuf>>,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<Option<QueryListen>, AgentConfigError> {
    let Some(listen) = listen else {
        if let Some(t) = token_file {
            return Err(src.error(
                t.span(),
                "agent.query_token_file",
                "is for the query endpoint: give query_listen too",
            ));
        }
        return Ok(None);
    };
    let addr = listen.get_ref().parse::<SocketAddr>().map_err(|_| {
        src.error(
            listen.span(),
            "agent.query_listen",
            format!(
                "'{}' is not an address and port (e.g. 127.0.0.1:9751)",
                excerpt::excerpt(listen.get_ref())
            ),
        )
    })?;
    let Some(t) = token_file else {
        if is_loopback(&addr) {
            return Ok(Some(QueryListen {
                addr,
                token: None,
                token_file: None,
            }));
        }
        return Err(src.error(
            listen.span(),
            "agent.query_listen",
            format!("{addr} is not loopback: give query_token_file (a bearer token, mode 0600)"),
        ));
    };
    let path = resolve(t.get_ref());
    let token = read_token(&path).map_err(|m| src.error(t.span(), "agent.query_token_file", m))?;
    Ok(Some(QueryListen {
        addr,
        token: Some(token),
        token_file: Some(path),
    }))
}

/// The token in `path`, through the bounded reader, refused when group or others may read it.
fn read_token(path: &Path) -> Result<String, String> {
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is mode {:04o}: a token file must be readable by its owner only (chmod 600)",
            path.display(),
            mode & 0o7777
        ));
    }
    let text = crate::bounded_read::read_text(path, crate::bounded_read::SECRET_FILE_MAX)
        .map_err(|e| e.to_string())?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{} holds no token", path.display()));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{}: a token is one line of visible ASCII characters",
            path.display()
        ));
    }
    Ok(token.to_string())
}

/// `[tap.store]`, validated by the command line's rules, errors worded for the file.
pub(super) fn store_sink(
    src: &Source<'_>,
    tap: &str,
    s: &Spanned<RawStoreSink>,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<OutputConfig, AgentConfigError> {
    let raw = s.get_ref();
    let err = |span: Option<Range<usize>>, key: &str, message: String| {
        src.error(
            span.unwrap_or(s.span()),
            format!("tap '{tap}': store.{key}"),
            message,
        )
    };
    let max_bytes = match raw.max_bytes.as_ref().map(|m| (m.span(), m.get_ref())) {
        None => None,
        Some((_, RawSize::Bytes(n))) => Some(*n),
        Some((span, RawSize::Text(t))) => Some(
            crate::cli::parse_binary_size(t)
                .map_err(|reason| err(Some(span), "max_bytes", reason))?,
        ),
    };
    let dir = raw.dir.get_ref();
    let store_args = StoreArgs {
        store: Some(if dir.as_os_str().is_empty() {
            dir.clone()
        } else {
            resolve(dir)
        }),
        store_max_bytes: max_bytes,
        store_max_age: raw.max_age.as_ref().map(|a| a.get_ref().clone()),
    };
    let mut output_args = super::OutputArgs::default_values();
    output_args.compress = raw.compress.as_ref().map(|c| c.get_ref().clone());
    output_args.file_size = raw.file_size_mb.as_ref().map(|v| *v.get_ref());
    output_args.rotate_seconds = raw.rotate_seconds.as_ref().map(|v| *v.get_ref());
    output_args.flush_interval = raw
        .flush_interval_ms
        .as_ref()
        .map_or(1000, |v| *v.get_ref());
    output_args.on_disk_full = DiskFullArg::Drop;
    let located = |e: StoreError| {
        let StoreError::Setting { option, reason, .. } = &e else {
            return err(None, "dir", e.to_string());
        };
        // The flag a rule names, as this file's key.
        let (key, span) = match *option {
            "--store-max-bytes" => ("max_bytes", raw.max_bytes.as_ref().map(Spanned::span)),
            "--store-max-age" => ("max_age", raw.max_age.as_ref().map(Spanned::span)),
            "--store" => ("dir", Some(raw.dir.span())),
            _ => ("(store)", None),
        };
        let reason = reason
            .replace("--compress", "compress")
            .replace("-C ", "file_size_mb ")
            .replace("-G ", "rotate_seconds ");
        err(span, key, reason)
    };
    let store = StoreConfig::from_args(&store_args)
        .map_err(located)?
        .ok_or_else(|| err(Some(raw.dir.span()), "dir", "give a directory".into()))?;
    store.output(&output_args).map_err(located)
}

#[cfg(test)]
mod tests {
    use super::super::{AgentConfig, AgentConfigError};
    use std::{os::unix::fs::PermissionsExt as _, path::Path};

    fn parse(text: &str) -> Result<AgentConfig, AgentConfigError> {
        AgentConfig::parse(Path::new("/etc/tap/tap.toml"), text)
    }

    fn message(text: &str) -> String {
        match parse(text) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("expected an error, got {c:?}"),
        }
    }

    const TAP: &str = "[[tap]]\nname = \"up\"\ninterfaces = [\"eth0\"]\n";

    #[test]
    fn a_store_sink_is_a_store_output() {
        let c = parse(&format!(
            "[agent]\nquery_listen = \"127.0.0.1:9751\"\n{TAP}[tap.store]\ndir = \"store\"\nmax_bytes = \"2G\"\nmax_age = \"7d\"\n"
        ))
        .unwrap();
        let q = c.query.unwrap();
        assert_eq!(q.addr, "127.0.0.1:9751".parse().unwrap());
        assert_eq!(q.token, None);
        let store = c.taps[0].capture.output.store.clone().unwrap();
        assert_eq!(store.dir, Path::new("/etc/tap/store"));
        assert_eq!(store.max_bytes, Some(2 << 30));
        assert_eq!(
            store.max_age,
            Some(std::time::Duration::from_secs(7 * 86_400))
        );
        assert_eq!(
            c.taps[0].capture.output.format,
            crate::config::Format::Pcapng
        );
        let c = parse(&format!(
            "{TAP}[tap.store]\ndir = \"/s\"\nmax_bytes = 1000000\n"
        ))
        .unwrap();
        assert_eq!(
            c.taps[0].capture.output.store.clone().unwrap().max_bytes,
            Some(1_000_000)
        );
    }

    #[test]
    fn store_refusals_name_the_key() {
        let m = message(&format!(
            "{TAP}[tap.store]\ndir = \"/s\"\nmax_age = \"soon\"\n"
        ));
        assert!(m.contains("tap 'up': store.max_age"), "{m}");
        let m = message(&format!(
            "{TAP}[tap.store]\ndir = \"/s\"\nmax_bytes = \"lots\"\n"
        ));
        assert!(m.contains("store.max_bytes"), "{m}");
        let m = message(&format!(
            "{TAP}[tap.store]\ndir = \"/s\"\n[tap.file]\npath = \"/x.pcap\"\n"
        ));
        assert!(m.contains("store") && m.contains("one of them"), "{m}");
        let m = message(&format!(
            "{TAP}[tap.store]\ndir = \"/s\"\n[[tap]]\nname = \"b\"\ninterfaces = [\"eth1\"]\n[tap.store]\ndir = \"/s\"\n"
        ));
        assert!(m.contains("already used by tap 'up'"), "{m}");
    }

    #[test]
    fn off_loopback_needs_a_private_token_file() {
        let m = message(&format!(
            "[agent]\nquery_listen = \"0.0.0.0:9751\"\n{TAP}[tap.store]\ndir = \"/s\"\n"
        ));
        assert!(
            m.contains("agent.query_listen") && m.contains("query_token_file"),
            "{m}"
        );
        let m = message(&format!(
            "[agent]\nquery_listen = \"[::]:9751\"\n{TAP}[tap.store]\ndir = \"/s\"\n"
        ));
        assert!(m.contains("not loopback"), "{m}");
        let m = message(&format!(
            "[agent]\nquery_token_file = \"/t\"\n{TAP}[tap.store]\ndir = \"/s\"\n"
        ));
        assert!(m.contains("give query_listen"), "{m}");
        let dir = std::env::temp_dir().join(format!("tap-query-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "s3cret-token\n").unwrap();
        let text = format!(
            "[agent]\nquery_listen = \"0.0.0.0:9751\"\nquery_token_file = \"{}\"\n{TAP}[tap.store]\ndir = \"/s\"\n",
            token.display()
        );
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        let m = message(&text);
        assert!(m.contains("mode 0644") && m.contains("chmod 600"), "{m}");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = parse(&text).unwrap();
        assert_eq!(
            c.query.clone().unwrap().token.as_deref(),
            Some("s3cret-token")
        );
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the token stays out of logs"
        );
        std::fs::write(&token, "\n").unwrap();
        assert!(message(&text).contains("holds no token"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
