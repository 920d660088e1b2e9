//! C2SP signed notes and tlog checkpoints.
//!
//! A checkpoint body is `<origin>\n<tree size>\n<base64 root hash>\n`. A signed note is the
//! body, a blank line, then one line per signature: `— <key name> <base64(key id || sig)>`,
//! where the key id is the first 4 bytes of SHA-256(key name || "\n" || 0x01 || public key)
//! and 0x01 names Ed25519. A verifier key is written `<name>+<hex key id>+<base64(0x01 || pk)>`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, ED25519};

use super::key::LedgerKey;
use super::merkle::Hash;

const ALG_ED25519: u8 = 0x01;
const SIG_PREFIX: &str = "\u{2014} ";

/// The 4-byte key id.
pub fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[ALG_ED25519]);
    ctx.update(public);
    let d = ctx.finish();
    let mut id = [0u8; 4];
    id.copy_from_slice(&d.as_ref()[..4]);
    id
}

/// `<name>+<hex id>+<base64(0x01 || pk)>`
pub fn verifier_key(name: &str, public: &[u8; 32]) -> String {
    let mut k = vec![ALG_ED25519];
    k.extend_from_slice(public);
    format!(
        "{name}+{}+{}",
        hex::encode(key_id(name, public)),
        STANDARD.encode(k)
    )
}

/// A parsed verifier key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    pub name: String,
    pub id: [u8; 4],
    pub public: [u8; 32],
}

impl Verifier {
    /// Parses `<name>+<hex id>+<base64(0x01 || pk)>` and checks the id.
    pub fn parse(s: &str) -> Result<Verifier, String> {
        let mut parts = s.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("verifier key must be name+id+key".to_string());
        };
        let key = STANDARD
            .decode(key_b64)
            .map_err(|e| format!("verifier key: {e}"))?;
        if key.len() != 33 || key[0] != ALG_ED25519 {
            return Err("verifier key is not an Ed25519 key".to_string());
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&key[1..]);
        let id = key_id(name, &public);
        if hex::encode(id) != id_hex.to_ascii_lowercase() {
            return Err("verifier key id does not match its name and key".to_string());
        }
        Ok(Verifier {
            name: name.to_string(),
            id,
            public,
        })
    }

    /// Verifies a signed note and returns its text (the signed body) if a signature by this
    /// key is valid.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, String> {
        let split = note
            .rfind("\n\n")
            .ok_or("not a signed note: no blank line before signatures")?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix(SIG_PREFIX) else {
                return Err(format!("malformed signature line {line:?}"));
            };
            let Some((name, b64)) = rest.split_once(' ') else {
                return Err(format!("malformed signature line {line:?}"));
            };
            if name != self.name {
                continue;
            }
            let raw = STANDARD
                .decode(b64)
                .map_err(|e| format!("signature: {e}"))?;
            if raw.len() != 68 || raw[..4] != self.id {
                continue;
            }
            return UnparsedPublicKey::new(&ED25519, &self.public)
                .verify(text.as_bytes(), &raw[4..])
                .map(|_| text)
                .map_err(|_| format!("bad signature by {name}"));
        }
        Err(format!("no signature by {}", self.name))
    }
}

/// Signs `text` (which must end with a newline) as a note by `name`.
pub fn sign_note(text: &str, name: &str, key: &LedgerKey) -> String {
    let mut raw = key_id(name, &key.public()).to_vec();
    raw.extend_from_slice(&key.sign(text.as_bytes()));
    format!("{text}\n{SIG_PREFIX}{name} {}\n", STANDARD.encode(raw))
}

/// A checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The body text.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Parses a body (extension lines after the root are ignored).
    pub fn parse(text: &str) -> Result<Checkpoint, String> {
        let mut lines = text.lines();
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or("checkpoint: no origin")?;
        let size = lines
            .next()
            .and_then(|l| l.parse::<u64>().ok())
            .ok_or("checkpoint: bad tree size")?;
        let root_b64 = lines.next().ok_or("checkpoint: no root hash")?;
        let root = STANDARD
            .decode(root_b64)
            .map_err(|e| format!("checkpoint root: {e}"))?;
        let root: Hash = root
            .try_into()
            .map_err(|_| "checkpoint root is not 32 bytes")?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";

    /// golang/mod sumdb/note/note_test.go (TestSign / TestOpen): Ed25519 is deterministic,
    /// so signing must reproduce the published note byte for byte.
    #[test]
    fn known_answer_signed_note() {
        let skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let seed = STANDARD
            .decode(skey.splitn(5, '+').nth(4).unwrap())
            .unwrap();
        assert_eq!(seed[0], ALG_ED25519);
        let key = LedgerKey::from_seed(&seed[1..]).unwrap();
        assert_eq!(verifier_key("PeterNeumann", &key.public()), vkey);
        let want = format!("{TEXT}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n");
        assert_eq!(sign_note(TEXT, "PeterNeumann", &key), want);
        assert_eq!(Verifier::parse(vkey).unwrap().open(&want).unwrap(), TEXT);
        // Rejected keys from the same file: wrong length, unknown algorithm.
        assert!(Verifier::parse(
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        )
        .is_err());
    }

    /// transparency-dev/formats log/note_test.go: a real sum.golang.org checkpoint.
    #[test]
    fn known_answer_sumdb_checkpoint() {
        let v =
            Verifier::parse("sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8")
                .unwrap();
        let note = "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n\u{2014} sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n";
        let cp = Checkpoint::parse(v.open(note).unwrap()).unwrap();
        assert_eq!(
            (cp.origin.as_str(), cp.size),
            ("go.sum database tree", 6476701)
        );
        assert_eq!(
            cp.body(),
            "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n"
        );
    }

    #[test]
    fn sign_and_open_checkpoint() {
        let key = LedgerKey::from_seed(&[7u8; 32]).unwrap();
        let cp = Checkpoint {
            origin: "clawser.test/log".into(),
            size: 3,
            root: [9u8; 32],
        };
        let note = sign_note(&cp.body(), &cp.origin, &key);
        let v = Verifier::parse(&verifier_key(&cp.origin, &key.public())).unwrap();
        let text = v.open(&note).unwrap();
        assert_eq!(Checkpoint::parse(text).unwrap(), cp);
        let forged = note.replace("\n3\n", "\n4\n");
        assert!(v.open(&forged).is_err());
        let other = LedgerKey::from_seed(&[8u8; 32]).unwrap();
        let v2 = Verifier::parse(&verifier_key(&cp.origin, &other.public())).unwrap();
        assert!(v2.open(&note).is_err());
    }
}
