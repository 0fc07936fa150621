//! The flags of `tap session ...` (clap types stay in the settings module; the fleet's command
//! code reads them through these plain structs).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::model::{DEFAULT_ETCD_ROOT, DEFAULT_SESSION_PRIORITY};

/// `tap session`: fleet vTAP sessions in etcd.
#[derive(Debug, Args)]
#[command(after_help = SESSION_HELP)]
pub struct SessionArgs {
    #[command(flatten)]
    pub etcd: EtcdArgs,
    #[command(subcommand)]
    pub command: SessionCommand,
}

const SESSION_HELP: &str = "\
Sessions are stored as JSON at ROOT/v1/sessions/TENANT/NAME (ROOT: --etcd-prefix, /tap);
agents write what they realized at ROOT/v1/status/TENANT/NAME/HOST under their lease, and the
operator's ownership map lives at ROOT/v1/owners/SOURCE. The password of --etcd-user comes from
USER:PASSWORD, --etcd-password-file or TAP_ETCD_PASSWORD.
";

/// How to reach etcd.
#[derive(Debug, Clone, Args)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated (http://HOST:PORT or https://HOST:PORT).
    #[arg(
        long = "etcd",
        value_name = "URL,...",
        env = "TAP_ETCD",
        value_delimiter = ',',
        global = true
    )]
    pub endpoints: Vec<String>,
    /// CA certificate (PEM) of https endpoints.
    #[arg(
        long = "etcd-ca",
        value_name = "FILE",
        env = "TAP_ETCD_CA",
        global = true
    )]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for members that check clients.
    #[arg(
        long = "etcd-cert",
        value_name = "FILE",
        env = "TAP_ETCD_CERT",
        global = true
    )]
    pub cert: Option<PathBuf>,
    /// Key of the client certificate (PEM).
    #[arg(
        long = "etcd-key",
        value_name = "FILE",
        env = "TAP_ETCD_KEY",
        global = true
    )]
    pub key: Option<PathBuf>,
    /// etcd user, or USER:PASSWORD. A tenant's user name is the tenant.
    #[arg(
        long = "etcd-user",
        value_name = "USER",
        env = "TAP_ETCD_USER",
        global = true
    )]
    pub user: Option<String>,
    /// File holding the user's password.
    #[arg(
        long = "etcd-password-file",
        value_name = "FILE",
        env = "TAP_ETCD_PASSWORD_FILE",
        global = true
    )]
    pub password_file: Option<PathBuf>,
    /// Root of tap's keys in etcd.
    #[arg(long = "etcd-prefix", value_name = "PREFIX", env = "TAP_ETCD_PREFIX", default_value = DEFAULT_ETCD_ROOT, global = true)]
    pub root: String,
    /// Longest wait for etcd, per request, in seconds.
    #[arg(
        long = "etcd-timeout",
        value_name = "SECS",
        default_value_t = 5.0,
        global = true
    )]
    pub timeout: f64,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Store a new session (refused if one of that name exists).
    Create(CreateArgs),
    /// List sessions (a tenant's, or all that the user may read).
    List {
        #[arg(long, env = "TAP_TENANT")]
        tenant: Option<String>,
        /// JSON: one array of the sessions as stored.
        #[arg(long)]
        json: bool,
    },
    /// Show a session, where it runs now and its counters across the fleet.
    Show {
        name: String,
        #[arg(long, env = "TAP_TENANT")]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a session; the agents detach it.
    Delete {
        name: String,
        #[arg(long, env = "TAP_TENANT")]
        tenant: Option<String>,
    },
    /// The operator's map of sources to tenants.
    #[command(subcommand)]
    Owner(OwnerCommand),
    /// Create the etcd roles and users of the fleet (see the README), and enable auth if asked.
    SetupAuth(SetupAuthArgs),
}

/// `tap session create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Session name (letters, digits, '-', '_', '.').
    pub name: String,
    /// The tenant (default: the etcd user).
    #[arg(long, env = "TAP_TENANT")]
    pub tenant: Option<String>,
    /// What to mirror: mac:MAC, ip:ADDR[/LEN] or iface:HOST:GLOB.
    #[arg(long)]
    pub source: String,
    /// Where to: <vxlan://HOST>[:PORT]?vni=N, <file:PATH>[?OPTIONS] or suricata:SOCKET?file=PATH&OPTIONS.
    #[arg(long)]
    pub target: String,
    /// Seen from the workload: in, out or both.
    #[arg(long, value_enum, default_value = "both")]
    pub direction: DirectionArg,
    /// pcap-filter expression (default: every packet of the source).
    #[arg(long, default_value = "")]
    pub filter: String,
    /// Bytes kept of each packet (0: all).
    #[arg(long, default_value_t = 0)]
    pub snaplen: u32,
    /// When two sessions select the same packet on one host, the lower number wins.
    #[arg(long, default_value_t = DEFAULT_SESSION_PRIORITY)]
    pub priority: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DirectionArg {
    In,
    Out,
    Both,
}

/// `tap session owner ...` (operator only).
#[derive(Debug, Subcommand)]
pub enum OwnerCommand {
    /// SOURCE (mac:MAC, ip:ADDR[/LEN], iface:HOST:GLOB; HOST may be *) belongs to TENANT.
    Set {
        source: String,
        #[arg(long)]
        tenant: String,
    },
    /// Forget the owner of SOURCE.
    Delete { source: String },
    /// Print the map.
    List,
}

/// `tap session setup-auth`.
#[derive(Debug, Args)]
pub struct SetupAuthArgs {
    /// A tenant to create a role and user for; repeat.
    #[arg(long = "tenant")]
    pub tenants: Vec<String>,
    /// USER=FILE: the password of USER (root, tap-operator, tap-agent or a tenant) is in FILE.
    /// A user that does not exist yet needs one.
    #[arg(long = "password", value_name = "USER=FILE")]
    pub passwords: Vec<String>,
    /// Enable etcd authentication at the end (creates `root`, which then needs a password).
    #[arg(long)]
    pub enable: bool,
}
