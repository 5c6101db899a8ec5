//! The data generator (see bench/README.md).

pub fn main() -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
