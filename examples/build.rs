//! Captures git version, commit, build date, rustc version and platform for `node_version!()`.

fn main() {
    subnodesync_sysinfo::build_info::emit();
}
