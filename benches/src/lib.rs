//! What the bench binaries in `benches/benches/` share: the strict Logs Ingestion server in
//! another process, and CPU and memory figures of a process from `/proc`.

use std::{
    collections::BTreeMap,
    io::BufRead,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

/// The repo's `defender-ingestion-server` (release build) as a child process, with
/// `--limits-only`: it checks auth, paths and size limits and inflates every body, but neither
/// parses nor keeps rows, so its own JSON parsing is not what a bench measures.
pub struct Server {
    pub child: Child,
    /// `https://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The token endpoint's authority.
    pub authority: String,
    pub ca_pem: String,
    /// Where the CA certificate to trust is written.
    pub ca_file: PathBuf,
}

/// The client secret the server accepts (in its environment, never on its command line).
pub const SERVER_SECRET: &str = "s";
/// Tenant and client id the server's token endpoint serves.
pub const SERVER_TENANT: &str = "tenant-1";
pub const SERVER_CLIENT: &str = "app-1";

impl Server {
    /// Starts the server with DCR `dcr` declaring `Custom-<table>_CL` for each of `tables`,
    /// and `extra` arguments (for example `--unavailable-for-seconds 60`).
    pub fn start(dir: &Path, dcr: &str, tables: &[&str], extra: &[&str]) -> Self {
        let bin = std::env::var_os("DI_SERVER_BIN").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/defender-ingestion-server")
        });
        assert!(bin.exists(), "{} is missing: cargo build --release -p defender-ingestion-server", bin.display());
        let streams: BTreeMap<String, Vec<String>> =
            tables.iter().map(|t| (format!("Custom-{t}_CL"), vec![])).collect();
        let streams_file = dir.join("streams.json");
        std::fs::write(&streams_file, serde_json::to_string(&BTreeMap::from([(dcr, streams)])).unwrap()).unwrap();
        let ca_file = dir.join("ca.pem");
        let mut child = Command::new(bin)
            .args(["--streams", streams_file.to_str().unwrap(), "--tenant", SERVER_TENANT])
            .args(["--client-id", SERVER_CLIENT, "--client-secret-env", "DI_BENCH_SECRET"])
            .args(["--ca-out", ca_file.to_str().unwrap()])
            .args(["--allow-unknown-columns", "--limits-only", "--token-lifetime-secs", "86400"])
            .args(extra)
            .env("DI_BENCH_SECRET", SERVER_SECRET)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let ready: serde_json::Value = serde_json::from_str(&line).expect("the server's ready line");
        let (endpoint, authority) = (ready["endpoint"].as_str().unwrap(), ready["authority"].as_str().unwrap());
        Self {
            endpoint: endpoint.into(),
            authority: authority.into(),
            ca_pem: std::fs::read_to_string(&ca_file).unwrap(),
            ca_file,
            child,
        }
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) of process `pid` so far (`"self"` for this one).
pub fn cpu_seconds(pid: &str) -> f64 {
    read_cpu_seconds(pid).unwrap_or_else(|| panic!("no /proc/{pid}/stat"))
}

/// [`cpu_seconds`], or None when the process is gone.
pub fn read_cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// A memory figure of `/proc/<pid>/status` in MiB: `VmHWM` (peak resident) or `VmRSS` (now).
pub fn memory_mib(pid: &str, field: &str) -> f64 {
    read_memory_mib(pid, field).unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Resets this process's `VmHWM` to its current RSS (Linux `clear_refs` 5), so that the next
/// reading of it is the peak of what ran in between. False where the kernel refuses it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// [`memory_mib`], or None when the process is gone (or a zombie, which has no memory).
pub fn read_memory_mib(pid: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    Some(kib / 1024.0)
}
