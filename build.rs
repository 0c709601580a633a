//! Rebuild when anything under `templates/` changes: `init` embeds those files with
//! `include_dir!`, which does not tell cargo what it read, so an edited template would
//! otherwise keep the old copy in the binary until some Rust file changed.

fn main() {
    println!("cargo:rerun-if-changed=templates");
    println!("cargo:rerun-if-changed=build.rs");
}
