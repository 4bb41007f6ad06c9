//! The runtime image, built FROM scratch with buildah by `scripts/build-image.sh` from this
//! build's binary, and the binary run inside it as the non-root user (`buildah run --isolation
//! chroot`: the OCI runtime cannot set rlimits on these machines, see reference/contracts.md §j).
//!
//! Needs `buildah` (Debian package; `scripts/test-infra.sh install` installs it) and root (the
//! chroot isolation and the chown of the mounted output directory); without root it is skipped
//! with a printed reason.

use std::{
    collections::BTreeMap,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Output},
};

use defender_tests::{binary, repo_root};

const RUNTIME_UID: u32 = 65532;
const IMAGE: &str = "localhost/defender-ingest:test";

/// buildah with its own storage under a temporary directory (vfs driver, as the script uses).
struct Buildah {
    root: PathBuf,
    run: PathBuf,
}

impl Buildah {
    fn cmd(&self) -> Command {
        let mut c = Command::new("buildah");
        c.args(["--storage-driver", "vfs", "--root"]).arg(&self.root).arg("--runroot").arg(&self.run);
        c
    }

    /// Runs buildah with `args`; panics with its output when it fails.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().expect("spawn buildah");
        assert!(out.status.success(), "buildah {args:?} failed with {}\n{}", out.status, both(&out));
        String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
    }

    /// `defender-ingest ARGS` inside container `ctr` as the runtime user, with `volumes`.
    fn run_in(&self, ctr: &str, volumes: &[String], args: &[&str]) -> Output {
        let mut c = self.cmd();
        c.args(["run", "--isolation", "chroot", "--user", &format!("{RUNTIME_UID}:{RUNTIME_UID}")]);
        for v in volumes {
            c.args(["-v", v]);
        }
        c.args([ctr, "--", "/usr/local/bin/defender-ingest"]).args(args);
        c.output().expect("spawn buildah run")
    }
}

fn both(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// "<path> <mode> <uid>:<gid> <sha256 or ->" of everything under `root`, as the build script's
/// `--manifest` writes it, by path.
fn manifest_of(root: &Path) -> BTreeMap<String, String> {
    let mut entries = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let sum = if meta.is_file() {
                let out = Command::new("sha256sum").arg(&path).output().expect("spawn sha256sum");
                String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
            } else {
                "-".to_string()
            };
            if meta.is_dir() {
                stack.push(path.clone());
            }
            let rel = format!("/{}", path.strip_prefix(root).unwrap().display());
            let line = format!("{rel} {:o} {}:{} {sum}", meta.permissions().mode() & 0o7777, meta.uid(), meta.gid());
            entries.insert(rel, line);
        }
    }
    entries
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.clone());
        if path.is_dir() {
            files_under(&path, out);
        }
    }
}

#[test]
fn the_image_runs_the_sample_as_non_root_and_nothing_in_it_changes() {
    if which("buildah").is_none() {
        panic!("buildah is not on PATH: run `bash scripts/test-infra.sh install` (it installs the Debian package)");
    }
    // The effective uid, without libc: /proc/self belongs to it.
    let euid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX);
    if euid != 0 {
        eprintln!(
            "skipped: buildah run --isolation chroot and the chown of the output directory need root here \
             (uid {euid})"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let buildah = Buildah { root: dir.path().join("storage"), run: dir.path().join("runroot") };
    let manifest_file = dir.path().join("manifest");

    // Build.
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/build-image.sh"))
        .arg("--binary")
        .arg(binary())
        .args(["--tag", IMAGE, "--manifest"])
        .arg(&manifest_file)
        .env("BUILDAH_ROOT", &buildah.root)
        .env("BUILDAH_RUNROOT", &buildah.run)
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/build-image.sh failed with {}\n{}", out.status, both(&out));
    let config = buildah.ok(&[
        "inspect",
        "--type",
        "image",
        "--format",
        "{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}}",
        IMAGE,
    ]);
    assert_eq!(config, format!("{RUNTIME_UID}:{RUNTIME_UID} [/usr/local/bin/defender-ingest]"));
    let size = buildah.ok(&["images", "--format", "{{.Size}}", IMAGE]);
    eprintln!("image {IMAGE}: {size} (binary {})", binary().display());

    let expected: BTreeMap<String, String> = std::fs::read_to_string(&manifest_file)
        .unwrap()
        .lines()
        .map(|l| (l.split(' ').next().unwrap().to_string(), l.to_string()))
        .collect();
    for (path, line) in &expected {
        assert!(line.contains(" 0:0 "), "image file not root-owned: {line}");
        let mode = u32::from_str_radix(line.split(' ').nth(1).unwrap(), 8).unwrap();
        assert_eq!(mode & 0o022, 0, "{path} is writable by group or others: {line}");
    }

    let ctr = buildah.ok(&["from", "--quiet", IMAGE]);
    let container = Container { buildah: &buildah, id: ctr.clone() };

    // --version and schemas check.
    let out = buildah.run_in(&ctr, &[], &["--version"]);
    assert!(out.status.success(), "--version in the image failed\n{}", both(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("defender-ingest "), "{}", both(&out));
    let out = buildah.run_in(&ctr, &[], &["schemas", "check"]);
    assert!(out.status.success(), "schemas check in the image failed\n{}", both(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: 36 tables"), "{}", both(&out));

    // A generated sample, mounted read-only; the archive to a mounted directory of the runtime user.
    let input = dir.path().join("in");
    let output = dir.path().join("out");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&output).unwrap();
    std::os::unix::fs::chown(&output, Some(RUNTIME_UID), Some(RUNTIME_UID)).unwrap();
    let sample = input.join("sample.ndjson.gz");
    let generated = Command::new(binary())
        .args(["generate", "--records", "400", "--gzip", "--bad", "0.01", "-o"])
        .arg(&sample)
        .output()
        .unwrap();
    assert!(generated.status.success(), "generate failed\n{}", both(&generated));
    let volumes = [format!("{}:/in:ro", input.display()), format!("{}:/out", output.display())];
    let out = buildah.run_in(
        &ctr,
        &volumes,
        &["run", "--input", "/in/sample.ndjson.gz", "--archive", "/out/archive", "--json"],
    );
    assert!(out.status.success(), "run in the image failed\n{}", both(&out));
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", both(&out)));
    let tables = summary["tables"].as_object().expect("summary.tables");
    let records: u64 = tables.values().map(|t| t["records_in"].as_u64().unwrap()).sum();
    let archived: u64 = tables.values().map(|t| t["written_archive"].as_u64().unwrap()).sum();
    assert_eq!(records, 400, "{}", both(&out));
    assert!(archived > 300, "rows archived: {archived}\n{}", both(&out));

    // The process was the runtime user: everything it wrote is its own.
    let mut written = Vec::new();
    files_under(&output, &mut written);
    assert!(written.iter().any(|p| p.extension().is_some_and(|e| e == "parquet")), "no Parquet file in {written:?}");
    for p in &written {
        let uid = std::fs::metadata(p).unwrap().uid();
        assert_eq!(uid, RUNTIME_UID, "{} is owned by uid {uid}, not the runtime user", p.display());
    }
    // ... and it cannot write to the image's filesystem.
    let out = buildah.run_in(&ctr, &[], &["run", "--input", "/etc/passwd", "--archive", "/tmp/archive"]);
    assert!(!out.status.success(), "the runtime user wrote to /tmp of the image\n{}", both(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{}", both(&out));

    // Nothing in the image's filesystem changed but the volumes' mount points (empty, root's).
    let mount = PathBuf::from(buildah.ok(&["mount", &ctr]));
    let mut after = manifest_of(&mount);
    buildah.ok(&["umount", &ctr]);
    for point in ["/in", "/out"] {
        let line = after.remove(point).unwrap_or_else(|| panic!("no mount point {point}"));
        assert_eq!(line, format!("{point} 755 0:0 -"), "mount point {point}");
    }
    let changed: Vec<String> = expected
        .iter()
        .filter(|(p, l)| after.get(*p) != Some(l))
        .map(|(p, l)| format!("- {l}\n+ {}", after.get(p).map_or("(gone)", String::as_str)))
        .chain(after.iter().filter(|(p, _)| !expected.contains_key(*p)).map(|(_, l)| format!("+ {l} (new)")))
        .collect();
    assert!(changed.is_empty(), "the image's filesystem changed:\n{}", changed.join("\n"));
    drop(container);
}

/// Removes the working container when the test ends, passed or not.
struct Container<'a> {
    buildah: &'a Buildah,
    id: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.buildah.cmd().args(["rm", &self.id]).output();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}
