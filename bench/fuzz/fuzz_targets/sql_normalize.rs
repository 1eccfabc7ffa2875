//! `sql::normalize` and `sql::verb` on arbitrary text: no panic, bounded output, and no
//! literal content kept for `SELECT '<secret>'`-shaped statements.
#![no_main]

use kindling_protocols::sql::{MAX_NORMALIZED, normalize, verb};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let normalized = normalize(&text);
    assert!(
        normalized.len() <= MAX_NORMALIZED,
        "normalize gave {} bytes (> {MAX_NORMALIZED})",
        normalized.len()
    );
    let v = verb(&text);
    assert!(v.len() <= 32, "verb {v:?} longer than 32 bytes");
    assert!(
        v.bytes().all(|c| c.is_ascii_uppercase() || c == b'_'),
        "verb {v:?}"
    );

    // A quoted literal whose content has no quote or backslash is replaced whole.
    let secret: String = text.chars().filter(|&c| c != '\'' && c != '\\').collect();
    let plain = normalize(&format!("SELECT '{secret}'"));
    assert_eq!(plain, "SELECT ?", "literal kept for SELECT '{secret}'");
    let prefixed = normalize(&format!("select * from t where a = E'{secret}' and b = 42"));
    assert_eq!(
        prefixed, "select * from t where a = ? and b = ?",
        "literal kept for {secret:?}"
    );
});
