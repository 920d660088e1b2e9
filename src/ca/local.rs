//! Loading or generating the local CA. The key file must be 0600: a CA key others can read
//! would let them impersonate every site to every agent, so Clawser refuses to start.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};
use crate::fsutil::{check_private, write_private, write_public};
use crate::identity::token::sha256_hex;

/// The CA certificate file inside the CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA private key file inside the CA directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// A loaded CA: its certificate (PEM and DER) and an issuer for leaves.
pub struct LocalCa {
    pub cert_path: PathBuf,
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub(super) issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

fn ca_err(e: impl std::fmt::Display) -> Error {
    Error::Ca(e.to_string())
}

impl LocalCa {
    /// Loads the CA from `dir`, generating it when neither file exists. Returns the CA and
    /// whether it was created now.
    pub fn load_or_create(dir: &Path) -> Result<(LocalCa, bool)> {
        let (cert, key) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        match (cert.exists(), key.exists()) {
            (true, true) => Ok((LocalCa::load(dir)?, false)),
            (false, false) => Ok((LocalCa::generate(dir)?, true)),
            _ => Err(Error::Ca(format!(
                "{} has only one of {CA_CERT_FILE} and {CA_KEY_FILE}; restore the other or remove both to generate a new CA",
                dir.display()
            ))),
        }
    }

    /// Loads an existing CA; refuses a key file readable by group or others.
    pub fn load(dir: &Path) -> Result<LocalCa> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        check_private(&key_path)?;
        let cert_pem =
            std::fs::read_to_string(&cert_path).map_err(Error::io("reading", &cert_path))?;
        let key_pem =
            std::fs::read_to_string(&key_path).map_err(Error::io("reading", &key_path))?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| Error::Ca(format!("{}: {e}", key_path.display())))?;
        let cert_der = pem_to_der(&cert_pem)
            .map_err(|e| Error::Ca(format!("{}: {e}", cert_path.display())))?;
        check_key_matches(&cert_der, &key).map_err(|e| {
            Error::Ca(format!(
                "{} does not belong to {}: {e}",
                key_path.display(),
                cert_path.display()
            ))
        })?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(ca_err)?;
        Ok(LocalCa {
            cert_path,
            cert_pem,
            cert_der,
            issuer,
        })
    }

    /// Generates a new CA (ECDSA P-256, 10 years, path length 0) into `dir`.
    pub fn generate(dir: &Path) -> Result<LocalCa> {
        std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(ca_err)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let host = host.trim();
        let cn = if host.is_empty() {
            "Clawser local CA".to_string()
        } else {
            format!("Clawser local CA ({host})")
        };
        dn.push(DnType::CommonName, cn);
        dn.push(DnType::OrganizationName, "Clawser");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key).map_err(ca_err)?;
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        let key_pem = key.serialize_pem();
        write_private(&key_path, |f| f.write_all(key_pem.as_bytes()))?;
        write_public(&cert_path, cert.pem().as_bytes())?;
        Ok(LocalCa {
            cert_path,
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// SHA-256 fingerprint of the CA certificate, as `AB:CD:...`.
    pub fn fingerprint(&self) -> String {
        let hex = sha256_hex(self.cert_der.as_ref()).to_ascii_uppercase();
        hex.as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":")
    }
}

fn pem_to_der(pem: &str) -> std::result::Result<CertificateDer<'static>, String> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))
}

/// Compares the certificate's public key with the key pair's.
fn check_key_matches(cert: &CertificateDer<'_>, key: &KeyPair) -> std::result::Result<(), String> {
    use rcgen::PublicKeyData;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| e.to_string())?;
    let cert_spki = parsed
        .tbs_certificate
        .subject_pki
        .subject_public_key
        .data
        .as_ref();
    if cert_spki == key.der_bytes() {
        Ok(())
    } else {
        Err("public keys differ".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_then_loads_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (a, created) = LocalCa::load_or_create(dir.path()).unwrap();
        assert!(created);
        let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (b, created) = LocalCa::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 32 * 3 - 1);
    }

    #[test]
    fn refuses_a_readable_key() {
        let dir = tempfile::tempdir().unwrap();
        LocalCa::generate(dir.path()).unwrap();
        let key = dir.path().join(CA_KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = LocalCa::load(dir.path()).unwrap_err();
        assert!(matches!(e, Error::InsecureKeyFile { .. }), "{e}");
    }

    #[test]
    fn refuses_a_half_ca_and_a_foreign_key() {
        let dir = tempfile::tempdir().unwrap();
        LocalCa::generate(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join(CA_CERT_FILE)).unwrap();
        assert!(LocalCa::load_or_create(dir.path()).is_err());
        let other = tempfile::tempdir().unwrap();
        LocalCa::generate(other.path()).unwrap();
        std::fs::copy(
            other.path().join(CA_CERT_FILE),
            dir.path().join(CA_CERT_FILE),
        )
        .unwrap();
        let e = LocalCa::load(dir.path()).unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");
    }
}
