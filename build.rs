//! Rebuild when a migration changes: they are embedded into the binary at compile time.
fn main() {
    println!("cargo:rerun-if-changed=sql");
}
