//! Dogfoods `build_info` on this crate itself, so `tests/node_version.rs` checks the whole path
//! from the build script to `node_version!()`. The module is included by path because a build
//! script cannot depend on its own package.

#[allow(unreachable_pub, dead_code)]
#[path = "src/build_info.rs"]
mod build_info;

fn main() {
    build_info::emit();
}
