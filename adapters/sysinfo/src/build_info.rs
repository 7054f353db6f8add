//! Build information for the register message's `node_version`, captured by the application's
//! build script.
//!
//! Call [`emit`] from `build.rs`; it prints `cargo:rustc-env` lines that set the five
//! `SUBNODE_BUILD_*` variables for the application's compilation, and
//! [`node_version!`](crate::node_version) reads them back with `option_env!`. Nothing here is
//! required at run time, and a missing `git` never fails the build: every value that cannot be
//! found becomes [`UNKNOWN`].
//!
//! | variable | value | source, first match wins |
//! | --- | --- | --- |
//! | [`GIT_VERSION_VAR`] | e.g. `v1.2.0-3-g1a2b3c4-dirty` | the variable itself, `git describe --tags --always --dirty` |
//! | [`GIT_COMMIT_VAR`] | full commit hash | the variable itself, `git rev-parse HEAD` |
//! | [`BUILD_DATE_VAR`] | UTC `YYYY-MM-DD` | the variable itself, `SOURCE_DATE_EPOCH`, the clock |
//! | [`RUSTC_VERSION_VAR`] | e.g. `rustc 1.95.0` | the variable itself, `$RUSTC --version` |
//! | [`PLATFORM_VAR`] | Go-style `{os}/{arch}` of the target, e.g. `linux/amd64` | the variable itself, `CARGO_CFG_TARGET_OS` / `_ARCH` |
//!
//! Setting a variable in the environment of the build overrides it, which is how a build from a
//! source tarball (no `.git`) or a packaging system supplies the values. An empty value counts as
//! unset.
//!
//! This module needs only std and the no_std core (for its calendar), so it is usable as a build
//! dependency with `default-features = false`.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// Name of the variable holding `git describe --tags --always --dirty`.
pub const GIT_VERSION_VAR: &str = "SUBNODE_BUILD_GIT_VERSION";
/// Name of the variable holding the full commit hash.
pub const GIT_COMMIT_VAR: &str = "SUBNODE_BUILD_GIT_COMMIT";
/// Name of the variable holding the UTC build date, `YYYY-MM-DD`.
pub const BUILD_DATE_VAR: &str = "SUBNODE_BUILD_DATE";
/// Name of the variable holding the compiler version, e.g. `rustc 1.95.0`.
pub const RUSTC_VERSION_VAR: &str = "SUBNODE_BUILD_RUSTC_VERSION";
/// Name of the variable holding the target platform, e.g. `linux/amd64`.
pub const PLATFORM_VAR: &str = "SUBNODE_BUILD_PLATFORM";

/// The value of anything that could not be found.
pub const UNKNOWN: &str = "unknown";

/// The reproducible-builds variable: seconds since the Unix epoch to use as the build time.
const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// Every override, in the order they are emitted.
const VARS: [&str; 5] = [GIT_VERSION_VAR, GIT_COMMIT_VAR, BUILD_DATE_VAR, RUSTC_VERSION_VAR, PLATFORM_VAR];

/// Captures the build information and prints it as build-script instructions.
///
/// The one call an application's `build.rs` needs; it is [`BuildInfo::capture`] followed by
/// [`BuildInfo::emit`].
///
/// Besides the `cargo:rustc-env` lines it prints `cargo:rerun-if-env-changed` for the overrides
/// and `SOURCE_DATE_EPOCH`, and `cargo:rerun-if-changed` for git's `HEAD`, the current branch's
/// ref, `packed-refs` and `refs/tags`, so a new commit, checkout or tag re-runs the script. Two
/// consequences:
///
/// - Emitting any `rerun-if` line turns off Cargo's default of re-running the build script when
///   any file of the package changes. If your `build.rs` does other work that depends on
///   files, print your own `cargo:rerun-if-changed` lines for them.
/// - The date is the date of the last run of the script, and the `-dirty` suffix reflects the
///   work tree at that run: editing files without committing does not re-run it.
pub fn emit() {
    BuildInfo::capture().emit();
}

/// The five values of `node_version`, as captured at build time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// `git describe --tags --always --dirty`, e.g. `v1.2.0-3-g1a2b3c4`.
    pub git_version: String,
    /// The full hash of `HEAD`.
    pub git_commit: String,
    /// UTC date of the build, `YYYY-MM-DD`.
    pub build_date: String,
    /// The compiler, e.g. `rustc 1.95.0`; sent as `go_version`.
    pub rustc_version: String,
    /// Go-style `{os}/{arch}` of the compilation target, e.g. `linux/amd64` or `darwin/arm64`.
    pub platform: String,
    /// Files whose change should re-run the build script.
    watch: Vec<PathBuf>,
    /// Problems worth a `cargo:warning`, such as a malformed `SOURCE_DATE_EPOCH`.
    warnings: Vec<String>,
}

impl BuildInfo {
    /// Captures the values from the build script's environment, `git`, `$RUSTC` and the clock.
    ///
    /// Meant to run inside a build script: it reads the variables Cargo sets there
    /// (`CARGO_MANIFEST_DIR`, `RUSTC`, `CARGO_CFG_TARGET_*`). Outside one, the platform is
    /// [`UNKNOWN`] and `git` runs in the current directory.
    #[must_use]
    pub fn capture() -> Self {
        Self::capture_with(&|name| std::env::var(name).ok(), "git", SystemTime::now())
    }

    /// [`capture`](Self::capture) with its inputs passed in: `var` reads an environment
    /// variable, `git` names the git program, `now` is the clock.
    fn capture_with(var: &dyn Fn(&str) -> Option<String>, git: &str, now: SystemTime) -> Self {
        let var = |name: &str| var(name).and_then(|v| first_line(&v));
        let dir = var("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
        let git = |args: &[&str]| run(git, args, &dir);
        let mut warnings = Vec::new();

        let git_version = var(GIT_VERSION_VAR);
        let git_commit = var(GIT_COMMIT_VAR);
        // Only watch the repository when a value actually comes from it.
        let watch = match (&git_version, &git_commit) {
            (Some(_), Some(_)) => Vec::new(),
            _ => git(&["rev-parse", "--absolute-git-dir", "--git-common-dir"])
                .map(|out| git_watch_list(&out, &dir))
                .unwrap_or_default(),
        };
        let git_version = git_version.or_else(|| git(&["describe", "--tags", "--always", "--dirty"]));
        let git_commit = git_commit.or_else(|| git(&["rev-parse", "HEAD"]));

        let build_date = var(BUILD_DATE_VAR).unwrap_or_else(|| {
            let epoch = var(SOURCE_DATE_EPOCH).and_then(|v| {
                let secs = v.parse::<u64>().ok();
                if secs.is_none() {
                    warnings.push(format!("{SOURCE_DATE_EPOCH}={v:?} is not a number of seconds; using the clock"));
                }
                secs
            });
            let secs = epoch.unwrap_or_else(|| now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
            date_from_unix_secs(secs)
        });

        let rustc_version = var(RUSTC_VERSION_VAR).or_else(|| {
            let rustc = var("RUSTC").unwrap_or_else(|| "rustc".to_owned());
            run(&rustc, &["--version"], &dir).and_then(|out| parse_rustc_version(&out))
        });

        let platform = var(PLATFORM_VAR).or_else(|| {
            let (os, arch) = (var("CARGO_CFG_TARGET_OS")?, var("CARGO_CFG_TARGET_ARCH")?);
            let little_endian = var("CARGO_CFG_TARGET_ENDIAN").as_deref() != Some("big");
            Some(go_platform(&os, &arch, little_endian))
        });

        let or_unknown = |v: Option<String>| v.unwrap_or_else(|| UNKNOWN.to_owned());
        BuildInfo {
            git_version: or_unknown(git_version),
            git_commit: or_unknown(git_commit),
            build_date,
            rustc_version: or_unknown(rustc_version),
            platform: or_unknown(platform),
            watch,
            warnings,
        }
    }

    /// Prints the build-script instructions to stdout, where Cargo reads them. See [`emit`].
    ///
    /// # Panics
    ///
    /// If stdout cannot be written, which fails the build as a build script should.
    pub fn emit(&self) {
        self.write_to(&mut io::stdout().lock()).expect("writing build-script instructions to stdout");
    }

    /// Writes the build-script instructions to `out`.
    fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        for name in VARS.iter().chain([&SOURCE_DATE_EPOCH]) {
            writeln!(out, "cargo:rerun-if-env-changed={name}")?;
        }
        for path in &self.watch {
            writeln!(out, "cargo:rerun-if-changed={}", path.display())?;
        }
        for warning in &self.warnings {
            writeln!(out, "cargo:warning={warning}")?;
        }
        let values = [&self.git_version, &self.git_commit, &self.build_date, &self.rustc_version, &self.platform];
        for (name, value) in VARS.iter().zip(values) {
            writeln!(out, "cargo:rustc-env={name}={value}")?;
        }
        Ok(())
    }
}

/// Runs `program args` in `dir` and returns the first line of its output, or `None` if it cannot
/// be started, fails, or prints nothing.
fn run(program: impl AsRef<OsStr>, args: &[&str], dir: &Path) -> Option<String> {
    let output = Command::new(program).args(args).current_dir(dir).stdin(Stdio::null()).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let stdout = String::from_utf8(output.stdout).ok()?;
    // `rev-parse` with several arguments prints one line each: keep them all for the caller.
    Some(stdout.trim().to_owned()).filter(|s| !s.is_empty())
}

/// The first line of `value`, trimmed, if not empty: `cargo:rustc-env` values cannot span lines.
fn first_line(value: &str) -> Option<String> {
    Some(value.lines().next()?.trim().to_owned()).filter(|s| !s.is_empty())
}

/// The files that change on a commit, checkout or new tag, given the output of
/// `git rev-parse --absolute-git-dir --git-common-dir` run in `dir`. Only existing paths are
/// listed (canonicalizing drops the others): Cargo re-runs a build script on every build while
/// a watched path is missing.
fn git_watch_list(rev_parse: &str, dir: &Path) -> Vec<PathBuf> {
    let mut lines = rev_parse.lines().map(str::trim);
    let Some(git_dir) = lines.next().map(PathBuf::from) else { return Vec::new() };
    // In a linked worktree HEAD is per worktree while refs live in the common directory; the
    // common directory may be printed relative to `dir`.
    let common_dir = lines.next().map_or_else(|| git_dir.clone(), |c| dir.join(c));
    let head = git_dir.join("HEAD");
    let mut watch = vec![head.clone()];
    if let Some(reference) = std::fs::read_to_string(&head).ok().as_deref().and_then(head_ref) {
        watch.push(common_dir.join(reference));
    }
    watch.push(common_dir.join("packed-refs"));
    watch.push(common_dir.join("refs").join("tags"));
    // Canonical paths read better in Cargo's output than `dir/../../.git/...`.
    watch.into_iter().filter_map(|path| path.canonicalize().ok()).collect()
}

/// The ref a `HEAD` file points at (`ref: refs/heads/main` → `refs/heads/main`), or `None` for a
/// detached `HEAD`.
fn head_ref(head: &str) -> Option<&str> {
    head.trim().strip_prefix("ref:").map(str::trim).filter(|r| !r.is_empty())
}

/// `rustc 1.95.0 (59807616e 2026-04-14)` → `rustc 1.95.0`; channel suffixes such as `-nightly`
/// stay. Output that does not start with `rustc` is kept whole (first line).
fn parse_rustc_version(output: &str) -> Option<String> {
    let line = first_line(output)?;
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some("rustc"), Some(version)) => Some(format!("rustc {version}")),
        _ => Some(line),
    }
}

/// Go's `{GOOS}/{GOARCH}` spelling (`linux/amd64`) of a Rust target's OS, architecture and
/// byte order, as `node_version.platform` carries it.
pub fn go_platform(os: &str, arch: &str, little_endian: bool) -> String {
    format!("{}/{}", go_os(os), go_arch(arch, little_endian))
}

/// Go's `GOOS` name for a Rust `target_os`: they differ only for macOS.
fn go_os(os: &str) -> &str {
    match os {
        "macos" => "darwin",
        other => other,
    }
}

/// Go's `GOARCH` name for a Rust `target_arch` and byte order; unknown ones pass through.
fn go_arch(arch: &str, little_endian: bool) -> &str {
    match (arch, little_endian) {
        ("x86_64", _) => "amd64",
        ("x86", _) => "386",
        ("aarch64", true) => "arm64",
        ("aarch64", false) => "arm64be",
        ("arm", true) => "arm",
        ("arm", false) => "armbe",
        ("powerpc64", true) => "ppc64le",
        ("powerpc64", false) => "ppc64",
        ("powerpc", _) => "ppc",
        ("mips", true) => "mipsle",
        ("mips64", true) => "mips64le",
        ("loongarch64", _) => "loong64",
        ("wasm32", _) => "wasm",
        (other, _) => other,
    }
}

/// The UTC calendar date, `YYYY-MM-DD`, of a Unix time in seconds: the date half of the core's
/// RFC 3339 timestamp, so there is one calendar in the project.
fn date_from_unix_secs(secs: u64) -> String {
    let text = subnodesync_core::Timestamp::from_unix_secs(secs).to_rfc3339();
    String::from_utf8_lossy(text.get(..10).unwrap_or_default()).into_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    /// Captures with only `vars` set, `git` as the git program, and the clock at `now_secs`.
    fn capture(vars: &[(&str, &str)], git: &str, now_secs: u64) -> BuildInfo {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        BuildInfo::capture_with(&|name| vars.get(name).cloned(), git, UNIX_EPOCH + Duration::from_secs(now_secs))
    }

    fn emitted(info: &BuildInfo) -> String {
        let mut out = Vec::new();
        info.write_to(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn dates_are_utc_calendar_days_including_leap_days() {
        assert_eq!(date_from_unix_secs(0), "1970-01-01");
        assert_eq!(date_from_unix_secs(86_399), "1970-01-01");
        assert_eq!(date_from_unix_secs(86_400), "1970-01-02");
        assert_eq!(date_from_unix_secs(951_782_400), "2000-02-29");
        assert_eq!(date_from_unix_secs(1_700_000_000), "2023-11-14");
        assert_eq!(date_from_unix_secs(1_709_164_800), "2024-02-29");
        // 2100 is not a leap year.
        assert_eq!(date_from_unix_secs(4_107_542_399), "2100-02-28");
        assert_eq!(date_from_unix_secs(4_107_542_400), "2100-03-01");
        assert_eq!(date_from_unix_secs(253_402_300_799), "9999-12-31");
    }

    #[test]
    fn rust_arch_names_map_to_go_arch_names() {
        assert_eq!(go_arch("x86_64", true), "amd64");
        assert_eq!(go_arch("aarch64", true), "arm64");
        assert_eq!(go_arch("x86", true), "386");
        assert_eq!(go_arch("arm", true), "arm");
        assert_eq!(go_arch("powerpc64", true), "ppc64le");
        assert_eq!(go_arch("powerpc64", false), "ppc64");
        assert_eq!(go_arch("mips", true), "mipsle");
        assert_eq!(go_arch("mips", false), "mips");
        assert_eq!(go_arch("riscv64", true), "riscv64");
        assert_eq!(go_arch("s390x", false), "s390x");
        assert_eq!(go_arch("loongarch64", true), "loong64");
    }

    #[test]
    fn macos_is_darwin_and_other_oses_keep_their_names() {
        assert_eq!(go_os("macos"), "darwin");
        assert_eq!(go_os("linux"), "linux");
        assert_eq!(go_os("windows"), "windows");
    }

    #[test]
    fn rustc_version_keeps_name_and_version_only() {
        assert_eq!(parse_rustc_version("rustc 1.95.0 (59807616e 2026-04-14)\n").as_deref(), Some("rustc 1.95.0"));
        assert_eq!(
            parse_rustc_version("rustc 1.97.0-nightly (abcdef012 2026-05-01)").as_deref(),
            Some("rustc 1.97.0-nightly")
        );
        assert_eq!(parse_rustc_version("my-wrapper 3\nmore").as_deref(), Some("my-wrapper 3"));
        assert_eq!(parse_rustc_version("  \n"), None);
    }

    #[test]
    fn head_ref_is_read_from_a_symbolic_head_only() {
        assert_eq!(head_ref("ref: refs/heads/main\n"), Some("refs/heads/main"));
        assert_eq!(head_ref("1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b\n"), None);
    }

    #[test]
    fn overrides_win_and_git_is_not_run_for_them() {
        let info = capture(
            &[
                (GIT_VERSION_VAR, "v9.9.9"),
                (GIT_COMMIT_VAR, "abc123"),
                (BUILD_DATE_VAR, "2001-02-03"),
                (RUSTC_VERSION_VAR, "rustc 1.0.0"),
                (PLATFORM_VAR, "plan9/mips"),
                ("CARGO_CFG_TARGET_OS", "linux"),
                ("CARGO_CFG_TARGET_ARCH", "x86_64"),
                (SOURCE_DATE_EPOCH, "0"),
            ],
            "/nonexistent/git",
            1_700_000_000,
        );
        assert_eq!(
            (&*info.git_version, &*info.git_commit, &*info.build_date, &*info.rustc_version, &*info.platform),
            ("v9.9.9", "abc123", "2001-02-03", "rustc 1.0.0", "plan9/mips")
        );
        assert!(info.watch.is_empty());
    }

    #[test]
    fn missing_git_and_rustc_give_unknown_without_failing() {
        let info = capture(&[("RUSTC", "/nonexistent/rustc")], "/nonexistent/git", 0);
        assert_eq!(info.git_version, UNKNOWN);
        assert_eq!(info.git_commit, UNKNOWN);
        assert_eq!(info.rustc_version, UNKNOWN);
        assert_eq!(info.platform, UNKNOWN);
        assert_eq!(info.build_date, "1970-01-01");
        assert!(info.watch.is_empty());
    }

    #[test]
    fn source_date_epoch_sets_the_date_and_a_malformed_one_warns() {
        let info = capture(&[(SOURCE_DATE_EPOCH, "951782400")], "/nonexistent/git", 1_700_000_000);
        assert_eq!(info.build_date, "2000-02-29");
        assert!(info.warnings.is_empty());

        let info = capture(&[(SOURCE_DATE_EPOCH, "yesterday")], "/nonexistent/git", 1_700_000_000);
        assert_eq!(info.build_date, "2023-11-14");
        assert_eq!(info.warnings.len(), 1);
    }

    #[test]
    fn platform_comes_from_the_target_cfg() {
        let vars = [
            ("CARGO_CFG_TARGET_OS", "macos"),
            ("CARGO_CFG_TARGET_ARCH", "aarch64"),
            ("CARGO_CFG_TARGET_ENDIAN", "little"),
        ];
        assert_eq!(capture(&vars, "/nonexistent/git", 0).platform, "darwin/arm64");
    }

    #[test]
    fn empty_and_multi_line_values_are_cleaned() {
        let info = capture(&[(GIT_VERSION_VAR, ""), (GIT_COMMIT_VAR, " abc\ninjected")], "/nonexistent/git", 0);
        assert_eq!(info.git_version, UNKNOWN);
        assert_eq!(info.git_commit, "abc");
    }

    #[test]
    fn emitted_lines_set_every_variable_and_watch_the_overrides() {
        let info = capture(&[(GIT_VERSION_VAR, "v1.0.0")], "/nonexistent/git", 0);
        let out = emitted(&info);
        for name in VARS {
            assert!(out.contains(&format!("cargo:rerun-if-env-changed={name}\n")), "{out}");
        }
        assert!(out.contains("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH\n"), "{out}");
        assert!(out.contains("cargo:rustc-env=SUBNODE_BUILD_GIT_VERSION=v1.0.0\n"), "{out}");
        assert!(out.contains("cargo:rustc-env=SUBNODE_BUILD_GIT_COMMIT=unknown\n"), "{out}");
        assert!(out.contains("cargo:rustc-env=SUBNODE_BUILD_DATE=1970-01-01\n"), "{out}");
        assert_eq!(out.lines().filter(|l| l.starts_with("cargo:rustc-env=")).count(), 5);
    }

    #[test]
    fn run_reports_failures_as_none() {
        let here = Path::new(".");
        assert_eq!(run("/nonexistent/program", &[], here), None);
        #[cfg(unix)]
        {
            assert_eq!(run("false", &[], here), None);
            assert_eq!(run("true", &[], here), None, "no output counts as nothing found");
            assert_eq!(run("echo", &["  hello "], here).as_deref(), Some("hello"));
        }
    }

    #[test]
    fn in_this_repository_git_values_and_watched_files_are_found() {
        // The crate is developed in a git work tree; skip quietly where it is built from a
        // package or git is not installed.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let Some(commit) = run("git", &["rev-parse", "HEAD"], dir) else { return };
        let info = capture(&[("CARGO_MANIFEST_DIR", env!("CARGO_MANIFEST_DIR"))], "git", 0);
        assert_eq!(info.git_commit, commit);
        assert_ne!(info.git_version, UNKNOWN);
        assert!(info.watch.iter().any(|p| p.ends_with("HEAD")), "{:?}", info.watch);
        assert!(info.watch.iter().all(|p| p.exists()));
    }
}
