//! Reading facts out of certificates (expiry, names, serial) for logs, metrics and checks.
//! Leaf of the certificate modules: it only parses, so every other one may use it.

use std::net::IpAddr;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use time::OffsetDateTime;

/// Facts about a certificate worth logging or exporting (never key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Expiry, seconds since the Unix epoch.
    pub not_after_unix: i64,
    /// DNS and IP subject alternative names.
    pub sans: Vec<String>,
    /// Serial number, colon-separated hex.
    pub serial: String,
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
        let mut sans = Vec::new();
        if let Some(ext) = cert.subject_alternative_name().map_err(|e| e.to_string())? {
            for name in &ext.value.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => {
                        sans.push((*dns).to_owned())
                    }
                    x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                        let ip = match bytes.len() {
                            4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                            16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                            _ => None,
                        };
                        if let Some(ip) = ip {
                            sans.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Self {
            not_after_unix: cert.validity().not_after.timestamp(),
            sans,
            serial: cert.raw_serial_as_string(),
        })
    }

    pub(super) fn not_after_rfc3339(&self) -> String {
        time::OffsetDateTime::from_unix_timestamp(self.not_after_unix)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| self.not_after_unix.to_string())
    }
}

/// Expiry of the first certificate in `pem`, if it parses.
pub fn not_after(pem: &[u8]) -> Option<OffsetDateTime> {
    let der = CertificateDer::from_pem_slice(pem).ok()?;
    let (_, x509) = x509_parser::parse_x509_certificate(&der).ok()?;
    OffsetDateTime::from_unix_timestamp(x509.validity().not_after.timestamp()).ok()
}

/// RFC 3339, for logs and messages.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
