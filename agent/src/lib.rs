//! `airlock-agent`: the library behind `airlockd`, Airlock's per-machine AI governance daemon.
//!
//! The agent listens on loopback, terminates TLS for the AI hosts its policy names (with a per-device,
//! name-constrained CA), runs every request through one explicit [`pipeline::Pipeline`] and forwards it
//! upstream over a pooled rustls client. Everything else is tunnelled byte for byte.
//!
//! Module map (each module's own doc says what it owns and what it must not do):
//! - [`body`]: the body type every response the agent produces has.
//! - [`budget`]: the memory budget all buffered bodies share.
//! - [`paths`]: where state lives on disk and how files in it are protected.
//! - [`policy`]: the policy file, its embedded default and the compiled interception set.
//! - [`bundle`]: signed policy bundles — the DSSE format, Ed25519 keys, building and verifying,
//!   and the trust (fleet, pinned keys, version ratchets) accepted bundles advance.
//! - [`ca`]: the device certificate authority and per-host leaves.
//! - [`proxy`]: the loopback listener — forward proxy, base-URL mode, PAC and a bare health check.
//! - [`caller`]: which local user owns each client connection, looked up off the request path.
//! - [`control`]: the control API — HTTP over a unix socket, access decided by peer credentials.
//! - [`pipeline`]: the ordered stages every AI request passes through.
//! - [`providers`]: what each provider's wire format means (operation, model, usage, error dialect).
//! - [`upstream`]: the pooled client that talks to providers and gateways.
//! - [`inventory`]: the shadow-AI inventory — AI apps seen in tunnels or inspected, by host and process.
//! - [`record`]: the structured record of every request and where records go.
//! - [`sys`]: process resources the OS bounds (open files).
//! - [`health`]: up or degraded, and why, from the status report's facts.
//! - [`pause`]: a pause of interception a person asked for, when policy allows it.
//! - [`agent`]: wiring it all together into a running daemon.

pub mod agent;
pub mod body;
pub mod budget;
pub mod bundle;
pub mod ca;
pub mod caller;
pub mod control;
pub mod credentials;
pub mod device;
pub mod error;
pub mod fleet;
pub mod governance;
pub mod guardrails;
pub mod health;
pub mod inventory;
pub mod journal;
pub mod paths;
pub mod pause;
pub mod pipeline;
pub mod policy;
pub mod pricing;
pub mod providers;
pub mod proxy;
pub mod record;
pub mod sync;
pub mod sys;
pub mod upstream;

pub use error::{AgentError, Result};
