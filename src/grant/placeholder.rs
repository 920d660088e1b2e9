//! Placeholders: what an agent holds instead of a secret. A placeholder is
//! `clwp_` + HMAC-SHA256(node key, credential id, secret name), so it is bound to one
//! credential and one secret, and worthless anywhere but in a request through Clawser from
//! that credential. This module derives them and the variables `clawser env` exports;
//! `inject.rs` finds and swaps them.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::config::Inject;
use crate::error::{Error, Result};
use crate::fsutil::{check_private, write_private};

/// Every placeholder starts with this.
pub const PLACEHOLDER_PREFIX: &str = "clwp_";
/// The key file in the data dir (0600).
pub const KEY_FILE: &str = "placeholder.key";

/// The node's placeholder key.
pub struct PlaceholderKey(ring::hmac::Key);

impl PlaceholderKey {
    /// Loads `<data_dir>/placeholder.key`, creating it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<PlaceholderKey> {
        let path = data_dir.join(KEY_FILE);
        let hex_key = if path.exists() {
            check_private(&path)?;
            std::fs::read_to_string(&path).map_err(Error::io("reading", &path))?
        } else {
            let k = crate::identity::token::new_token("")?;
            let hex_key = hex::encode(k.as_bytes());
            write_private(&path, |f| std::io::Write::write_all(f, hex_key.as_bytes()))?;
            hex_key
        };
        let bytes = hex::decode(hex_key.trim())
            .map_err(|_| Error::Invalid(format!("{} is not hex", path.display())))?;
        if bytes.len() < 32 {
            return Err(Error::Invalid(format!("{} is too short", path.display())));
        }
        Ok(PlaceholderKey(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            &bytes,
        )))
    }

    /// A key from bytes (tests).
    pub fn from_bytes(bytes: &[u8]) -> PlaceholderKey {
        PlaceholderKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes))
    }

    /// The placeholder of `secret` for the credential `credential_id`.
    pub fn placeholder(&self, credential_id: &str, secret: &str) -> String {
        let msg = format!("clawser-placeholder-v1\0{credential_id}\0{secret}");
        let tag = ring::hmac::sign(&self.0, msg.as_bytes());
        format!(
            "{PLACEHOLDER_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }
}

/// The variables `clawser env` exports for the secrets a credential may use: each secret's
/// `env:` names set to its placeholder, and git's credential helper (in the `GIT_CONFIG_*`
/// form, numbered from `git_index`) answering `x-access-token:<placeholder>` for the hosts
/// of `basic` secrets.
pub fn exports(
    key: &PlaceholderKey,
    credential_id: &str,
    usable: &[&crate::config::SecretDecl],
    git_index: usize,
) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    let mut cases = String::new();
    for d in usable {
        let ph = key.placeholder(credential_id, &d.name);
        for name in &d.env {
            vars.push((name.clone(), ph.clone()));
        }
        if d.inject == Inject::Aws {
            // The SDKs sign with these; Clawser re-signs with the real key.
            vars.push(("AWS_ACCESS_KEY_ID".into(), ph.clone()));
            let secret = key.placeholder(credential_id, &format!("{}#secret", d.name));
            vars.push(("AWS_SECRET_ACCESS_KEY".into(), secret));
            let token = key.placeholder(credential_id, &format!("{}#token", d.name));
            vars.push(("AWS_SESSION_TOKEN".into(), token));
            continue;
        }
        if matches!(d.inject, Inject::Basic | Inject::Bearer) {
            // Host globs are plain `a-z0-9.-*` (validated), safe in a shell `case`.
            let hosts = d.hosts.join("|");
            cases.push_str(&format!(
                "{hosts}) printf 'username=x-access-token\\npassword=%s\\n' {ph};; "
            ));
        }
    }
    if !cases.is_empty() {
        let helper = format!(
            "!f() {{ test \"$1\" = get || exit 0; h=; p=; while read -r l; do case \"$l\" in host=*) h=\"${{l#host=}}\";; protocol=*) p=\"${{l#protocol=}}\";; esac; done; test \"$p\" = https || exit 0; case \"${{h%:*}}\" in {cases}esac; }}; f"
        );
        vars.push((
            format!("GIT_CONFIG_KEY_{git_index}"),
            "credential.helper".into(),
        ));
        vars.push((format!("GIT_CONFIG_VALUE_{git_index}"), helper));
        vars.push(("GIT_CONFIG_COUNT".into(), (git_index + 1).to_string()));
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SecretDecl, SecretSource};

    fn gh() -> SecretDecl {
        SecretDecl {
            name: "gh".into(),
            from: SecretSource::Env("CLAWSER_TEST_PH_GH".into()),
            hosts: vec!["api.github.com".into()],
            inject: Inject::Basic,
            env: vec!["GH_TOKEN".into()],
            add: false,
        }
    }

    #[test]
    fn bound_to_credential_and_secret() {
        let key = PlaceholderKey::from_bytes(&[7; 32]);
        let a = key.placeholder("cred_a", "gh");
        assert!(a.starts_with(PLACEHOLDER_PREFIX) && a.len() > 40);
        assert_ne!(a, key.placeholder("cred_b", "gh"));
        assert_ne!(a, key.placeholder("cred_a", "k"));
        assert_ne!(
            a,
            PlaceholderKey::from_bytes(&[8; 32]).placeholder("cred_a", "gh")
        );
    }

    #[test]
    fn git_helper_exports() {
        let key = PlaceholderKey::from_bytes(&[7; 32]);
        let gh = gh();
        let vars = exports(&key, "cred_a", &[&gh], 1);
        let ph = key.placeholder("cred_a", "gh");
        assert!(vars.contains(&("GH_TOKEN".into(), ph.clone())));
        assert!(vars.contains(&("GIT_CONFIG_KEY_1".into(), "credential.helper".into())));
        assert!(vars.contains(&("GIT_CONFIG_COUNT".into(), "2".into())));
        let helper = &vars.iter().find(|v| v.0 == "GIT_CONFIG_VALUE_1").unwrap().1;
        assert!(helper.contains(&ph) && helper.contains("protocol"));
    }
}
