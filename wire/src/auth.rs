//! The agent's bearer token: how it is stored (a file) and sent (`authorization: Bearer ...`
//! on every Flight call), and how the agent checks it.

use std::path::Path;

/// The gRPC metadata key that carries the token.
pub const HEADER: &str = "authorization";

/// Reads a token from `path`: the file's text without surrounding whitespace, not empty.
pub fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", path.display()));
    }
    Ok(token.to_owned())
}

/// The header value that presents `token`.
pub fn header_value(token: &str) -> String {
    format!("Bearer {token}")
}

/// Whether the header value `presented` carries `expected`, compared in time that does not
/// depend on where they differ.
pub fn accepts(expected: &str, presented: Option<&[u8]>) -> bool {
    let Some(presented) = presented else {
        return false;
    };
    let want = header_value(expected);
    let want = want.as_bytes();
    let mut diff = u8::from(want.len() != presented.len());
    for (i, w) in want.iter().enumerate() {
        diff |= w ^ presented.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_value_is_accepted() {
        assert!(accepts("s3cret", Some(b"Bearer s3cret")));
        assert!(!accepts("s3cret", Some(b"Bearer s3cre")));
        assert!(!accepts("s3cret", Some(b"Bearer s3cret2")));
        assert!(!accepts("s3cret", Some(b"bearer s3cret")));
        assert!(!accepts("s3cret", Some(b"s3cret")));
        assert!(!accepts("s3cret", Some(b"")));
        assert!(!accepts("s3cret", None));
    }

    #[test]
    fn token_files_are_trimmed_and_must_not_be_empty() {
        let dir = std::env::temp_dir().join(format!("kindling-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "  abc123\n").unwrap();
        assert_eq!(read_token(&file), Ok("abc123".to_owned()));
        std::fs::write(&file, " \n").unwrap();
        assert_eq!(
            read_token(&file),
            Err(format!("the token file {} is empty", file.display()))
        );
        let missing = dir.join("nope");
        assert!(read_token(&missing).unwrap_err().starts_with(&format!(
            "cannot read the token file {}: ",
            missing.display()
        )));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
