//! The webhook's serving certificate, from issuing it to serving it. The API server trusts the
//! webhook only through the `caBundle`, so everything here revolves around one long-lived CA and
//! a short-lived serving pair it signs, stored either as files or in one Secret.
//!
//! Layers, lowest first (each file uses only the ones above it in this list):
//! - [`x509`]: facts read out of a certificate (expiry, names, serial);
//! - [`issue`]: a CA and a serving certificate made in memory, as PEM;
//! - [`files`]: the `certs` command: the same as files in a directory, written atomically;
//! - [`tls`]: the rustls resolver serving the pair, reloaded from files or handed over in memory;
//! - [`secret`]: the self-managed Secret as data: settings, content, key names, errors;
//! - [`check`]: whether the Secret's certificate is worth keeping, and its replacement;
//! - [`rotation`]: the staged replacement of the Secret's CA;
//! - [`manager`]: the loop that watches, renews and serves the Secret, and registers its CAs.

pub mod check;
pub mod files;
pub mod issue;
pub mod manager;
pub mod rotation;
pub mod secret;
pub mod tls;
pub mod x509;
