//! `node_version!()` against this crate's own build script (`build.rs` calls
//! `build_info::emit()`), so every value it reads was captured at build time.

#![cfg(feature = "node-version")]

use subnodesync_sysinfo::build_info::UNKNOWN;
use subnodesync_sysinfo::{node_version, NodeVersion};

/// Usable in a constant, as an application would hold it.
const VERSION: NodeVersion<'static> = node_version!();

fn go_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    format!("{os}/{arch}")
}

#[test]
fn platform_is_the_go_style_target_of_this_build() {
    assert_eq!(VERSION.platform, go_platform());
}

#[test]
fn compiler_version_is_the_rustc_that_built_the_crate() {
    let version = VERSION.go_version.strip_prefix("rustc ").expect(VERSION.go_version);
    assert!(version.split('.').count() >= 3 && version.starts_with("1."), "{}", VERSION.go_version);
    assert!(!version.contains(' '), "only name and version: {}", VERSION.go_version);
}

#[test]
fn build_date_is_a_utc_calendar_date() {
    let date = VERSION.build_date.as_bytes();
    assert_eq!(date.len(), 10, "{}", VERSION.build_date);
    assert!(date.iter().enumerate().all(|(i, b)| if i == 4 || i == 7 { *b == b'-' } else { b.is_ascii_digit() }));
}

#[test]
fn git_values_are_a_commit_hash_or_unknown() {
    // Built from a git work tree both are known; from a package or without git both are unknown
    // (unless set in the environment of the build).
    if VERSION.git_commit == UNKNOWN {
        return;
    }
    assert!(VERSION.git_commit.len() >= 40 && VERSION.git_commit.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(VERSION.git_version, UNKNOWN);
    assert!(!VERSION.git_version.contains('\n'));
}

#[test]
fn no_field_is_empty() {
    let NodeVersion { git_version, git_commit, build_date, go_version, platform } = VERSION;
    for field in [git_version, git_commit, build_date, go_version, platform] {
        assert!(!field.is_empty());
    }
}
