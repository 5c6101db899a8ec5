//! The load driver (see bench/README.md).

pub fn main() -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
