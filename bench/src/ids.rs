//! Deterministic ids of generated rows.
//!
//! Every id is the MD5 of a short text read as a UUID, exactly what Postgres computes with
//! `md5(text)::uuid`: the generator, the load driver and the pgbench scripts (which build ids in
//! SQL from pgbench's integer variables) agree on every id without a lookup, and the ids are as
//! scattered over the index as random UUIDs are.
//!
//! | row | text |
//! | --- | --- |
//! | tenant `t` | `tenant:{t}` |
//! | owner of tenant `t` (JWT `sub`) | `user:{t}` |
//! | row `i` of kind `k` in tenant `t` | `{k}:{t}:{i}` (`paper`, `section`, `node`, `edge`, `mention`, `insight`, `event`) |

use md5::{Digest, Md5};
use uuid::Uuid;

/// The UUID Postgres gives for `md5(text)::uuid`.
pub fn md5_uuid(text: &str) -> Uuid {
    let digest = Md5::digest(text.as_bytes());
    Uuid::from_bytes(digest.into())
}

/// Tenant number `t` (0-based).
pub fn tenant(t: u64) -> Uuid {
    md5_uuid(&format!("tenant:{t}"))
}

/// The owner of tenant `t`: the user the load driver signs tokens for.
pub fn user(t: u64) -> Uuid {
    md5_uuid(&format!("user:{t}"))
}

/// Row `i` (0-based) of `kind` in tenant `t`.
pub fn row(kind: &str, t: u64, i: u64) -> Uuid {
    md5_uuid(&format!("{kind}:{t}:{i}"))
}

/// The slug of tenant `t`.
pub fn slug(t: u64) -> String {
    format!("bench-{t}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_md5_of_the_text_read_as_a_uuid() {
        // What `SELECT md5('tenant:0')::uuid` answers.
        assert_eq!(
            tenant(0).to_string(),
            "a3410e8b-1b79-0c2c-bf7b-4b7c86a8d750"
        );
        assert_ne!(tenant(0), tenant(1));
        assert_ne!(row("node", 0, 1), row("node", 1, 0));
    }
}
