//! Leaf certificates issued on demand: SAN = the DNS name or IP address, EKU serverAuth,
//! AKI set, one shared P-256 leaf key, validity `ca.leaf_validity_days` (at most 397).
//! Issued leaves are cached; concurrent misses for one host are merged into one issuance.

use std::sync::Arc;

use quick_cache::sync::Cache;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::SecureRandom;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::{CertifiedKey, SigningKey};
use time::{Duration, OffsetDateTime};

use super::{CertificateAuthority, LocalCa};
use crate::error::{Error, Result};

#[derive(Clone)]
struct CachedLeaf {
    key: Arc<CertifiedKey>,
    renew_after: OffsetDateTime,
}

/// Issues and caches leaf certificates from a [`LocalCa`].
pub struct LeafIssuer {
    ca: LocalCa,
    leaf_key: KeyPair,
    signing_key: Arc<dyn SigningKey>,
    validity: Duration,
    cache: Cache<String, CachedLeaf>,
}

impl std::fmt::Debug for LeafIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafIssuer")
            .field("ca", &self.ca)
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl LeafIssuer {
    /// A new issuer with a fresh shared leaf key.
    pub fn new(ca: LocalCa, validity_days: u32, cache_size: usize) -> Result<LeafIssuer> {
        let leaf_key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| Error::Ca(e.to_string()))?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let signing_key = rustls::crypto::ring::sign::any_supported_type(&der)
            .map_err(|e| Error::Ca(format!("leaf key: {e}")))?;
        Ok(LeafIssuer {
            ca,
            leaf_key,
            signing_key,
            validity: Duration::days(i64::from(validity_days.clamp(1, 397))),
            cache: Cache::new(cache_size.max(1)),
        })
    }

    /// The CA this issuer signs with.
    pub fn ca(&self) -> &LocalCa {
        &self.ca
    }

    fn issue(&self, host: &str) -> Result<CachedLeaf> {
        if !crate::model::valid_host(host) {
            return Err(Error::Ca(format!("{host:?} is not a valid host name")));
        }
        let mut params = CertificateParams::default();
        let san = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.try_into()
                    .map_err(|e| Error::Ca(format!("{host:?} is not a valid DNS name: {e}")))?,
            ),
        };
        params.subject_alt_names = vec![san];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        dn.push(DnType::OrganizationName, "Clawser");
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + self.validity;
        params.serial_number = Some(random_serial()?);
        let cert = params
            .signed_by(&self.leaf_key, &self.ca.issuer)
            .map_err(|e| Error::Ca(format!("issuing for {host}: {e}")))?;
        let key = CertifiedKey::new(vec![cert.der().clone()], self.signing_key.clone());
        // Renew well before expiry so a long-running proxy never serves an expired leaf.
        let renew_after = now + self.validity - Duration::days(1).min(self.validity / 2);
        Ok(CachedLeaf {
            key: Arc::new(key),
            renew_after,
        })
    }
}

fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Ca("random generator failed".to_string()))?;
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte
    Ok(SerialNumber::from(bytes.to_vec()))
}

impl CertificateAuthority for LeafIssuer {
    fn leaf_for(&self, host: &str) -> Result<Arc<CertifiedKey>> {
        let host = host.to_ascii_lowercase();
        let leaf = self.cache.get_or_insert_with(&host, || self.issue(&host))?;
        if leaf.renew_after <= OffsetDateTime::now_utc() {
            let fresh = self.issue(&host)?;
            self.cache.insert(host, fresh.clone());
            return Ok(fresh.key);
        }
        Ok(leaf.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn issuer() -> (tempfile::TempDir, LeafIssuer) {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::generate(dir.path()).unwrap();
        (dir, LeafIssuer::new(ca, 30, 100).unwrap())
    }

    #[test]
    fn leaf_has_san_eku_aki_and_short_validity() {
        let (_d, iss) = issuer();
        let leaf = iss.leaf_for("API.GitHub.com").unwrap();
        let (_, cert) = parse_x509_certificate(leaf.cert[0].as_ref()).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(
            san.general_names,
            vec![GeneralName::DNSName("api.github.com")]
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth);
        let aki = cert
            .extensions()
            .iter()
            .find(|e| e.oid == x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER);
        assert!(aki.is_some(), "AKI missing");
        let (_, ca) = parse_x509_certificate(iss.ca().cert_der.as_ref()).unwrap();
        assert_eq!(cert.issuer(), ca.subject());
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86400;
        assert!(days <= 397, "{days}");
        assert!(!cert.is_ca());
    }

    #[test]
    fn ip_literal_gets_an_ip_san() {
        let (_d, iss) = issuer();
        let leaf = iss.leaf_for("127.0.0.1").unwrap();
        let (_, cert) = parse_x509_certificate(leaf.cert[0].as_ref()).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(
            san.general_names,
            vec![GeneralName::IPAddress(&[127, 0, 0, 1])]
        );
    }

    #[test]
    fn cached_per_host() {
        let (_d, iss) = issuer();
        let a = iss.leaf_for("a.example").unwrap();
        let b = iss.leaf_for("a.example").unwrap();
        let c = iss.leaf_for("b.example").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn bad_names_are_errors_not_panics() {
        let (_d, iss) = issuer();
        assert!(iss.leaf_for("bad name\u{0}").is_err());
    }
}
