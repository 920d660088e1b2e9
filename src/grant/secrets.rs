//! Secret values: read by Clawser from their sources (`env`, `file`, `command` with a TTL),
//! kept in memory only, and never formatted anywhere: [`SecretValue`]'s `Debug` and
//! `Display` print `<secret>`.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::config::{SecretDecl, SecretSource};

/// How long a `command` source may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// The most a source may yield.
pub const MAX_SECRET_BYTES: usize = 16 * 1024;

/// A secret's value. Never printed: `{:?}` and `{}` show `<secret>`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Arc<str>);

impl SecretValue {
    /// The value, for the one place that injects it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

impl std::fmt::Display for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// Reads one secret from its source. The error names the secret and the source, never a
/// value.
pub fn read_source(decl: &SecretDecl) -> Result<SecretValue, String> {
    let name = &decl.name;
    let raw = match &decl.from {
        SecretSource::Env(var) => std::env::var(var)
            .map_err(|_| format!("secret {name:?}: environment variable {var} is not set"))?,
        SecretSource::File(path) => {
            let mut buf = String::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(MAX_SECRET_BYTES as u64 + 1).read_to_string(&mut buf))
                .map_err(|e| format!("secret {name:?}: cannot read {}: {e}", path.display()))?;
            buf
        }
        // The command line is not repeated: it could hold a credential itself.
        SecretSource::Command { cmd, .. } => run_command(cmd)
            .map_err(|e| format!("secret {name:?}: its from.command failed: {e}"))?,
    };
    let value = raw.trim();
    if value.is_empty() {
        return Err(format!("secret {name:?}: its source is empty"));
    }
    if decl.inject == crate::config::Inject::Aws {
        let v = super::sigv4::normalize(value)
            .map_err(|e| format!("secret {name:?}: not AWS credentials: {e}"))?;
        return Ok(SecretValue(Arc::from(v.as_str())));
    }
    if value.len() > MAX_SECRET_BYTES {
        return Err(format!(
            "secret {name:?}: longer than {MAX_SECRET_BYTES} bytes"
        ));
    }
    // It goes into a header or a query: no control characters, no header splitting.
    if value.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(format!(
            "secret {name:?}: contains control characters or line breaks"
        ));
    }
    Ok(SecretValue(Arc::from(value)))
}

/// Runs `sh -c CMD` with a timeout; its stdout is the value. Its stderr is not kept (it
/// could hold the value).
fn run_command(cmd: &str) -> Result<String, String> {
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut out)
            .take(MAX_SECRET_BYTES as u64 + 1)
            .read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None if start.elapsed() > COMMAND_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {}s", COMMAND_TIMEOUT.as_secs()));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let buf = reader.join().map_err(|_| "reading its output failed")?;
    if !status.success() {
        return Err(format!("exited with {status}"));
    }
    String::from_utf8(buf).map_err(|_| "its output is not UTF-8".to_string())
}

/// The configured secrets and their current values.
pub struct Secrets {
    decls: Vec<SecretDecl>,
    values: RwLock<HashMap<String, Held>>,
}

/// A value and the forms it must never come back in (computed once per value).
#[derive(Clone)]
struct Held {
    value: SecretValue,
    forms: Arc<Vec<Vec<u8>>>,
}

impl Held {
    /// The strings that must never reach the agent (the value, or for AWS credentials each
    /// of key id, secret key and session token), in every form they can take on the wire.
    fn of(decl: &SecretDecl, value: SecretValue) -> Held {
        let parts: Vec<&str> = match decl.inject {
            crate::config::Inject::Aws => {
                let c = super::sigv4::creds(value.expose());
                [Some(c.key_id), Some(c.secret), c.token]
                    .into_iter()
                    .flatten()
                    .collect()
            }
            _ => vec![value.expose()],
        };
        let mut forms: Vec<Vec<u8>> = parts.into_iter().flat_map(super::variants).collect();
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        Held {
            forms: Arc::new(forms),
            value,
        }
    }
}

impl Secrets {
    /// Reads every secret; the first missing source is an error naming the secret.
    pub fn load(decls: &[SecretDecl]) -> Result<Secrets, String> {
        let mut values = HashMap::new();
        for d in decls {
            values.insert(d.name.clone(), Held::of(d, read_source(d)?));
        }
        Ok(Secrets {
            decls: decls.to_vec(),
            values: RwLock::new(values),
        })
    }

    /// No secrets (tests, `policy` commands).
    pub fn none() -> Secrets {
        Secrets {
            decls: Vec::new(),
            values: RwLock::new(HashMap::new()),
        }
    }

    /// Checks every source without keeping the values: `(name, Ok | error)`.
    pub fn check(decls: &[SecretDecl]) -> Vec<(String, Result<(), String>)> {
        decls
            .iter()
            .map(|d| (d.name.clone(), read_source(d).map(|_| ())))
            .collect()
    }

    /// The declarations.
    pub fn decls(&self) -> &[SecretDecl] {
        &self.decls
    }

    /// One declaration.
    pub fn decl(&self, name: &str) -> Option<&SecretDecl> {
        self.decls.iter().find(|d| d.name == name)
    }

    fn held(&self, name: &str) -> Option<Held> {
        self.values
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// The current value of a secret.
    pub fn value(&self, name: &str) -> Option<SecretValue> {
        self.held(name).map(|h| h.value)
    }

    /// The value and every form it must never come back in (longest first), read together
    /// so a refresh in between cannot split them.
    pub fn value_and_forms(&self, name: &str) -> Option<(SecretValue, Arc<Vec<Vec<u8>>>)> {
        self.held(name).map(|h| (h.value, h.forms))
    }

    /// Every form of every current value (for the redactor, and the responses of a
    /// secret's hosts).
    pub fn forms(&self, name: &str) -> Arc<Vec<Vec<u8>>> {
        self.held(name).map(|h| h.forms).unwrap_or_default()
    }

    /// Re-reads one secret (a `command` source after its TTL). On failure the old value
    /// stays and the error (naming the secret, not the value) is returned.
    pub fn refresh(&self, name: &str) -> Result<(), String> {
        let decl = self
            .decl(name)
            .ok_or_else(|| format!("no secret {name:?}"))?;
        let held = Held::of(decl, read_source(decl)?);
        self.values
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), held);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Inject;

    fn decl(from: SecretSource) -> SecretDecl {
        SecretDecl {
            name: "gh".into(),
            from,
            hosts: vec!["api.github.com".into()],
            inject: Inject::Bearer,
            env: vec![],
            add: false,
        }
    }

    #[test]
    fn values_are_never_printed() {
        let v = SecretValue(Arc::from("ghp_realvalue"));
        assert_eq!(format!("{v:?} {v}"), "<secret> <secret>");
    }

    #[test]
    fn sources() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "file-value\n").unwrap();
        assert_eq!(
            read_source(&decl(SecretSource::File(f))).unwrap().expose(),
            "file-value"
        );
        let cmd = decl(SecretSource::Command {
            cmd: "printf cmd-value".into(),
            ttl: Duration::from_secs(60),
        });
        assert_eq!(read_source(&cmd).unwrap().expose(), "cmd-value");
        let missing = read_source(&decl(SecretSource::Env("CLAWSER_TEST_NOPE_1".into())));
        assert!(missing.unwrap_err().contains("\"gh\""));
        let failing = decl(SecretSource::Command {
            cmd: "echo leaked >&2; exit 3".into(),
            ttl: Duration::from_secs(60),
        });
        let e = read_source(&failing).unwrap_err();
        assert!(e.contains("exited") && !e.contains("leaked"), "{e}");
        let f2 = dir.path().join("two-lines");
        std::fs::write(&f2, "a\r\nInjected: yes").unwrap();
        assert!(read_source(&decl(SecretSource::File(f2))).is_err());
    }
}
