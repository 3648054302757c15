//! Member names and the numeric ids the raft crate needs.
//!
//! Every member derives a peer's raft id from its name alone, so the mapping needs no
//! coordination and survives membership changes: FNV-1a (64 bit) of the UTF-8 name, with 0
//! (the raft crate's "no node") mapped away.

/// The longest member name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// Checks a member name: 1-64 characters of `[A-Za-z0-9._-]`.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "must be 1-{MAX_NAME_LEN} characters, got {}",
            name.len()
        ));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!("may hold only [A-Za-z0-9._-], found {c:?}")),
        None => Ok(()),
    }
}

/// The raft id of a member name.
pub fn raft_id(name: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = name
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    if hash == 0 {
        1
    } else {
        hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for (name, ok) in [
            ("n1", true),
            ("a.b_c-D9", true),
            ("", false),
            ("has space", false),
            ("slash/", false),
            (&"x".repeat(64), true),
            (&"x".repeat(65), false),
        ] {
            assert_eq!(validate_name(name).is_ok(), ok, "name {name:?}");
        }
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(raft_id("n1"), raft_id("n1"));
        assert_ne!(raft_id("n1"), raft_id("n2"));
        assert_ne!(raft_id(""), 0);
    }
}
