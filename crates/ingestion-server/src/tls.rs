//! TLS for both listeners: a throw-away self-signed CA generated at start, and a server
//! certificate it signs for `127.0.0.1` and `localhost`.
//!
//! Clients trust the CA's PEM (`TestServer::ca_pem`). A separate CA (rather than one self-signed
//! leaf) keeps strict verifiers happy (OpenSSL's `VERIFY_X509_STRICT`, webpki), which refuse a
//! CA certificate used as an end-entity one. rustls runs with the `ring` provider only.

use std::io;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The generated certificate material.
pub struct SelfSigned {
    /// PEM of the CA certificate to trust.
    pub pem: String,
    ca_der: CertificateDer<'static>,
    leaf_der: CertificateDer<'static>,
    leaf_key: Vec<u8>,
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned").finish_non_exhaustive()
    }
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("self-signed certificate: {e}"))
}

impl SelfSigned {
    /// Generates a fresh CA and a server certificate for `127.0.0.1` and `localhost`.
    pub fn generate() -> io::Result<Self> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(other)?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "defender-ingestion-server test CA");
        ca_params.distinguished_name = name;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(other)?).map_err(other)?;

        let mut leaf_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).map_err(other)?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "localhost");
        leaf_params.distinguished_name = name;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().map_err(other)?;
        let leaf = leaf_params.signed_by(&leaf_key, &ca).map_err(other)?;

        Ok(Self {
            pem: ca.pem(),
            ca_der: ca.der().clone(),
            leaf_der: leaf.der().clone(),
            leaf_key: leaf_key.serialize_der(),
        })
    }

    /// A rustls server configuration presenting the leaf and the CA (ring provider, TLS 1.2 and
    /// 1.3, ALPN `http/1.1`).
    pub fn server_config(&self) -> io::Result<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(other)?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.leaf_der.clone(), self.ca_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.clone())),
            )
            .map_err(other)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// A rustls client configuration trusting only the CA (for tests and tools in Rust).
    pub fn client_config_for(ca_pem: &str) -> io::Result<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        let der = pem_to_der(ca_pem).ok_or_else(|| other("no CERTIFICATE block in the PEM"))?;
        roots.add(CertificateDer::from(der)).map_err(other)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(other)?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

/// Decodes the first `CERTIFICATE` block of a PEM string.
fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = pem.find(begin)? + begin.len();
    let end = pem[start..].find("-----END CERTIFICATE-----")? + start;
    let b64: String = pem[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64_decode(&b64)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    }
    let bytes = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in bytes {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_to_the_ca_der() {
        let cert = SelfSigned::generate().unwrap();
        assert_eq!(pem_to_der(&cert.pem).unwrap(), cert.ca_der.to_vec());
        SelfSigned::client_config_for(&cert.pem).unwrap();
        cert.server_config().unwrap();
    }
}
