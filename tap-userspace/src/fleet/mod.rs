//! Fleet vTAP sessions on etcd: "mirror this source to that target with this filter", declared
//! once and realized by whichever host's agent has the source.
//!
//! - [`session`]: the session (JSON, format version 1) and its validation, by the capture's rules.
//! - [`keys`]: the key layout under the root (`/tap/v1/...`).
//! - [`owners`]: the operator's map of sources to tenants.
//! - [`status`]: what an agent realized, written under its lease.
//! - [`inventory`] and [`netlink`]: this host's interfaces, addresses, bridge FDB and neighbours,
//!   read and followed through rtnetlink.
//! - [`reconcile`]: from sessions, owners and inventory to the captures this host should run.
//! - [`etcd`]: the client the agent and the CLI share (bounded timeouts, TLS, users, watch with
//!   revision resume, leases kept alive).
//! - [`auth`]: the roles and users of `tap session setup-auth`.
//! - [`agent`]: `tap agent`'s side: the sessions realized on this host, their statuses.
//! - [`command`]: `tap session ...`.

pub mod agent;
pub mod auth;
pub mod command;
pub mod etcd;
pub mod inventory;
pub mod keys;
pub mod netlink;
pub mod owners;
pub mod reconcile;
pub mod session;
pub mod status;
