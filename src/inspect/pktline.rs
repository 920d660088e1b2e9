//! Git's pkt-line framing and the command list at the start of a `git-receive-pack` body:
//! `<old-oid> <new-oid> <ref>` per line (capabilities after a NUL on the first), a flush
//! (`0000`), then the pack. Malformed input is an error with a reason, never a panic.

/// One ref update a push asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub old: String,
    pub new: String,
    pub name: String,
    /// The capabilities the client asked for (on the first command only).
    pub capabilities: Vec<String>,
}

/// Why a command list could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PktError(pub String);

/// The most commands one push may carry here.
pub const MAX_COMMANDS: usize = 10_000;

fn oid_ok(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Reads the commands; returns them and the offset where the pack starts.
pub fn receive_pack_commands(body: &[u8]) -> Result<(Vec<Command>, usize), PktError> {
    let mut at = 0;
    let mut commands = Vec::new();
    loop {
        let head = body
            .get(at..at + 4)
            .ok_or_else(|| PktError("the command list ends before its flush-pkt".into()))?;
        let head = std::str::from_utf8(head)
            .map_err(|_| PktError("a pkt-line length is not hex".into()))?;
        let len = usize::from_str_radix(head, 16)
            .map_err(|_| PktError(format!("pkt-line length {head:?} is not hex")))?;
        if len == 0 {
            return Ok((commands, at + 4));
        }
        if !(4..=65520).contains(&len) {
            return Err(PktError(format!("pkt-line length {len} is out of range")));
        }
        let payload = body
            .get(at + 4..at + len)
            .ok_or_else(|| PktError("a pkt-line is cut short".into()))?;
        at += len;
        let line =
            std::str::from_utf8(payload).map_err(|_| PktError("a command is not UTF-8".into()))?;
        let (line, caps) = line.split_once('\0').unwrap_or((line, ""));
        let line = line.trim_end_matches('\n');
        if line.starts_with("shallow ") {
            continue;
        }
        if line.starts_with("push-cert") {
            return Err(PktError(
                "signed pushes (push certificates) are not supported".into(),
            ));
        }
        let mut parts = line.splitn(3, ' ');
        let (old, new, name) = (parts.next(), parts.next(), parts.next());
        let (Some(old), Some(new), Some(name)) = (old, new, name) else {
            return Err(PktError(format!("not a ref update command: {line:?}")));
        };
        if !oid_ok(old) || !oid_ok(new) || old.len() != new.len() {
            return Err(PktError(format!("bad object ids in {line:?}")));
        }
        if !name.starts_with("refs/") || name.contains(['\0', ' ', '\n']) {
            return Err(PktError(format!("bad ref name {name:?}")));
        }
        if commands.len() >= MAX_COMMANDS {
            return Err(PktError(format!("more than {MAX_COMMANDS} ref updates")));
        }
        let capabilities = if commands.is_empty() {
            caps.split_whitespace().map(str::to_string).collect()
        } else {
            Vec::new()
        };
        commands.push(Command {
            old: old.to_string(),
            new: new.to_string(),
            name: name.to_string(),
            capabilities,
        });
    }
}

/// True for the all-zero object id (a ref that does not exist yet, or is deleted).
pub fn is_zero(oid: &str) -> bool {
    oid.bytes().all(|b| b == b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(s: &str) -> String {
        format!("{:04x}{s}", s.len() + 4)
    }

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const Z: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn commands() {
        let body = format!(
            "{}{}0000PACK",
            pkt(&format!(
                "{A} {B} refs/heads/main\0report-status side-band-64k\n"
            )),
            pkt(&format!("{Z} {B} refs/heads/feature\n"))
        );
        let (cmds, at) = receive_pack_commands(body.as_bytes()).unwrap();
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[0].name, "refs/heads/main");
        assert_eq!(cmds[1].old, Z);
        assert_eq!(&body[at..], "PACK");
    }

    #[test]
    fn malformed_is_an_error_not_a_panic() {
        let cases = [
            String::new(),
            "00".into(),
            "zzzz".into(),
            "0003".into(),
            "ffff".into(),
            pkt("hello"),
            pkt(&format!("{A} {B}")),
            format!("{}0000", pkt(&format!("{A} {B} main"))),
            format!("{}0000", pkt(&format!("{A} xyz refs/heads/x"))),
            format!("{}0000", pkt("push-cert\0push-cert")),
            pkt(&format!("{A} {B} refs/heads/main")), // no flush
        ];
        for c in cases {
            assert!(receive_pack_commands(c.as_bytes()).is_err(), "{c:?}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic fuzz: every prefix and byte flip of a valid body.
        let valid = format!(
            "{}0000PACK",
            pkt(&format!("{A} {B} refs/heads/main\0report-status\n"))
        );
        let bytes = valid.as_bytes();
        for cut in 0..bytes.len() {
            let _ = receive_pack_commands(&bytes[..cut]);
        }
        for i in 0..bytes.len() {
            for flip in [0x00u8, 0x01, 0x30, 0x7f, 0xff] {
                let mut b = bytes.to_vec();
                b[i] ^= flip;
                let _ = receive_pack_commands(&b);
            }
        }
    }
}
