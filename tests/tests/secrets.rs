//! Secrets never leak. `defender-ingest run` is given distinctive fake secrets (an Event Hubs
//! connection string, an Entra client secret, a storage SAS token and account key) and pointed
//! at endpoints that fail: a Kafka bootstrap and token endpoints on closed loopback ports, the
//! local token endpoint refusing the secret, Azurite refusing the storage credentials, a blob
//! endpoint that does not answer. Everything the process shows is collected (stderr, stdout, the
//! `--summary` file, every `/metrics`, `/healthz` and `/readyz` body) and searched for each
//! secret as given, percent-encoded and decoded, and base64-encoded (every alignment). Every case
//! also checks that the failure it provokes did show (the endpoint, the refusal), so that no
//! case passes by not reaching the code that handles the secret.
//!
//! Only 127.0.0.1 is ever contacted. Every wait is bounded, and a child still running when a test
//! ends (or panics) is killed.

// Synchronous test code, never on a tokio worker: it waits with thread::sleep.
#![allow(clippy::disallowed_methods)]

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use defender_core::Catalog;
use defender_gen::{GenOptions, Target};
use defender_ingestion_server::{ServerConfig, TestServer};
use defender_tests::{binary, infra};

/// What every secret below contains: no output may contain it, in any case.
const MARKER: &str = "LEAKCANARY";
/// An Event Hubs namespace connection string (its endpoint is loopback: never contacted).
const CONNECTION_STRING: &str =
    "Endpoint=sb://127.0.0.1/;SharedAccessKeyName=listen;SharedAccessKey=LEAKCANARYconnstr0123456789abcdef=";
/// An Entra app's client secret (the characters Entra uses: `~`, `.`).
const CLIENT_SECRET: &str = "LEAKCANARYclientsecret~0123456789.abcdefABCDEF";
/// A storage SAS token as the portal gives it (`sig` percent-encoded).
const SAS: &str =
    "sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&se=2030-01-01T00:00:00Z&sig=LEAKCANARYsas0123456789abcdefABCDEF%2B%2F%3D";
/// A storage account key (valid base64, as object_store requires).
const ACCOUNT_KEY: &str = "LEAKCANARYaccountkey0123456789abcdefABCD";

// ---------------------------------------------------------------------------------------------
// What must not appear
// ---------------------------------------------------------------------------------------------

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("utf-8")
}

fn base64(data: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Every form of `secret` that would betray it: as given, percent-decoded and -encoded, and
/// base64 (standard and URL-safe) at each of the three byte alignments it can have in a longer
/// encoded text (without the last group, which depends on what follows).
fn forms(secret: &str) -> Vec<String> {
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut plain = vec![secret.to_string(), percent_decode(secret), percent_encode(secret)];
    // The part from the marker on (the SAS signature, the key of a connection string), alone.
    let core = &secret[secret.find(MARKER).expect("every secret has the marker")..];
    let core = core.split(['&', ';']).next().unwrap();
    plain.extend([core.to_string(), percent_decode(core), percent_encode(&percent_decode(core))]);
    let mut all = plain.clone();
    for p in &plain {
        for skip in 0..3 {
            for alphabet in [STD, URL] {
                let encoded = base64(&p.as_bytes()[skip..], alphabet);
                all.push(encoded[..encoded.len() - 4].to_string());
            }
        }
    }
    all.sort();
    all.dedup();
    all
}

/// Everything a run showed, by where it came from.
#[derive(Default)]
struct Shown(Vec<(String, String)>);

impl Shown {
    fn add(&mut self, origin: impl Into<String>, text: impl Into<String>) {
        self.0.push((origin.into(), text.into()));
    }

    fn text(&self, origin: &str) -> String {
        self.0.iter().filter(|(o, _)| o == origin).map(|(_, t)| t.as_str()).collect::<Vec<_>>().join("\n")
    }

    fn count(&self, origin: &str) -> usize {
        self.0.iter().filter(|(o, _)| o == origin).count()
    }

    /// No secret in any form, and not the marker in any case, anywhere.
    fn assert_no_secret(&self) {
        assert!(!self.0.is_empty(), "nothing collected");
        for (origin, text) in &self.0 {
            let lower = text.to_lowercase();
            assert!(!lower.contains(&MARKER.to_lowercase()), "a secret in {origin}:\n{text}");
            for secret in [CONNECTION_STRING, CLIENT_SECRET, SAS, ACCOUNT_KEY] {
                for form in forms(secret) {
                    assert!(!text.contains(&form), "{secret:?} in {origin} (as {form:?}):\n{text}");
                }
            }
        }
    }
}

#[test]
fn the_forms_searched_for_catch_each_encoding() {
    let sig = "LEAKCANARYsas0123456789abcdefABCDEF+/=";
    let embedded = |s: &str| format!("prefix {s} suffix");
    let forms = forms(SAS);
    for shown in [
        embedded(SAS),
        embedded(sig),
        embedded(&percent_encode(SAS)),
        embedded(&base64(
            format!("x{sig}yz").as_bytes(),
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        )),
        embedded(&base64(
            format!("{SAS}!").as_bytes(),
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        )),
    ] {
        assert!(forms.iter().any(|f| shown.contains(f.as_str())), "not caught: {shown}");
    }
    assert_eq!(base64(b"Man is", b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"), "TWFuIGlz");
    assert_eq!(percent_decode("a%2Bb%3D"), "a+b=");
}

// ---------------------------------------------------------------------------------------------
// The process under test
// ---------------------------------------------------------------------------------------------

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `defender-ingest run ...` as a child with stdout, stderr and the summary in files; killed
/// when dropped.
struct Run {
    child: Child,
    name: String,
    stdout: PathBuf,
    stderr: PathBuf,
    summary: PathBuf,
    probes: Option<u16>,
}

impl Run {
    /// Starts `run <args> --summary <dir>/<name>.summary.json [--listen 127.0.0.1:PORT]` with
    /// `envs`, and none of the caller's AZURE_* or RUST_LOG variables.
    fn start(dir: &Path, name: &str, args: &[&str], envs: &[(&str, &str)], listen: bool) -> Self {
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let summary = dir.join(format!("{name}.summary.json"));
        let probes = listen.then(closed_port);
        let mut cmd = Command::new(binary());
        cmd.arg("run").args(args).args(["--summary", summary.to_str().unwrap()]);
        if let Some(port) = probes {
            cmd.args(["--listen", &format!("127.0.0.1:{port}")]);
        }
        for (k, _) in std::env::vars() {
            if k.starts_with("AZURE_") || k == "RUST_LOG" || k == "EVENTHUB_CONNECTION_STRING" {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn defender-ingest");
        Self { child, name: name.into(), stdout, stderr, summary, probes }
    }

    /// GET `path` on the probe port: (status, body); None while nothing answers.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.probes?));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string()))
    }

    /// Polls the probes every 200 ms for `period` (or until the process exits), keeping every
    /// answer (`GET /path` → "status body"); returns whether the process is still running.
    fn poll(&mut self, period: Duration, shown: &mut Shown) -> bool {
        let deadline = Instant::now() + period;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            for path in ["/metrics", "/healthz", "/readyz"] {
                if let Some((status, body)) = self.get(path) {
                    shown.add(path, format!("{status} {body}"));
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits up to `timeout` for the exit.
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then up to `timeout` for the exit; SIGKILL after that (None: it had to be killed).
    fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let pid = self.child.id().to_string();
        if self.child.try_wait().unwrap().is_none() {
            assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success(), "kill -TERM {pid}");
        }
        let status = self.wait(timeout);
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        status
    }

    /// The files the run wrote: stdout, stderr and the summary (when it wrote one).
    fn collect(&self, shown: &mut Shown) {
        shown.add("stdout", std::fs::read_to_string(&self.stdout).unwrap());
        shown.add("stderr", std::fs::read_to_string(&self.stderr).unwrap());
        if let Ok(summary) = std::fs::read_to_string(&self.summary) {
            shown.add("summary", summary);
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- stderr of {} ----\n{}", self.name, self.stderr());
        }
    }
}

/// A small input (two tables, bare records) in `dir`.
fn input(dir: &Path) -> PathBuf {
    let path = dir.join("input.json");
    let options = GenOptions {
        seed: 9,
        tables: vec!["DeviceProcessEvents".into(), "DeviceNetworkEvents".into()],
        target: Target::Records(200),
        envelope: false,
        ..GenOptions::default()
    };
    defender_gen::generate(&Catalog::embedded(), &options, &mut std::fs::File::create(&path).unwrap()).unwrap();
    path
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A Kafka source on `bootstrap` (nothing listens there), with `auth` (TOML lines of
/// [source.kafka] or a [source.kafka.auth] section), a local archive and a short shutdown.
fn kafka_config(dir: &Path, bootstrap: &str, auth: &str) -> PathBuf {
    let archive = dir.join("archive");
    write(
        dir,
        "kafka.toml",
        &format!(
            r#"
[archive]
url = "{archive}"

[service]
shutdown_grace_seconds = 2

[source.kafka]
bootstrap = "{bootstrap}"
topics = ["defender-events"]
group = "leak-test"
session_timeout_ms = 6000
{auth}
"#,
            archive = archive.display()
        ),
    )
}

/// Sends the two input tables to Sentinel at `endpoint` with a client secret from
/// DI_LEAK_CLIENT_SECRET, Entra at `authority`.
fn sentinel_config(dir: &Path, endpoint: &str, authority: &str, ca: Option<&Path>) -> PathBuf {
    let ca = ca.map(|p| format!("ca_file = \"{}\"", p.display())).unwrap_or_default();
    write(
        dir,
        "sentinel.toml",
        &format!(
            r#"
[tables.default]
sentinel = false

[tables.DeviceProcessEvents]
sentinel = true

[sentinel]
endpoint = "{endpoint}"
dcr_immutable_id = "dcr-00000000000000000000000000000009"
{ca}

[sentinel.auth]
method = "client_secret"
tenant_id = "tenant-1"
client_id = "app-1"
client_secret_env = "DI_LEAK_CLIENT_SECRET"
authority_host = "{authority}"
"#
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------------

/// The connection string is librdkafka's SASL password; the broker is down, so the daemon runs
/// not ready, logging connection failures, until SIGTERM. With every debug log on (ours and
/// librdkafka's, which dumps its configuration), as when troubleshooting a connection.
#[test]
fn the_event_hubs_connection_string_never_shows_while_the_broker_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let auth = "connection_string_env = \"DI_LEAK_EVENTHUB\"\n[source.kafka.properties]\ndebug = \"all\"\n";
    let config = kafka_config(dir.path(), &format!("127.0.0.1:{port}"), auth);
    let mut run = Run::start(
        dir.path(),
        "kafka-sas",
        &["--config", config.to_str().unwrap(), "--json"],
        &[("DI_LEAK_EVENTHUB", CONNECTION_STRING), ("RUST_LOG", "debug")],
        true,
    );
    let mut shown = Shown::default();
    assert!(run.poll(Duration::from_secs(5), &mut shown), "the daemon exited early:\n{}", run.stderr());
    let status = run.terminate(Duration::from_secs(30)).expect("the daemon stops on SIGTERM");
    run.collect(&mut shown);
    shown.assert_no_secret();

    assert!(status.success(), "SIGTERM ends the run with 0, got {status}:\n{}", run.stderr());
    let stderr = shown.text("stderr");
    assert!(
        stderr.contains(&format!("sasl_ssl://127.0.0.1:{port}")),
        "librdkafka tried the broker with SASL (the connection string):\n{stderr}"
    );
    assert!(stderr.contains("kafka client error"), "{stderr}");
    assert!(stderr.contains("sasl.password = [redacted]"), "librdkafka dumped its configuration:\n{stderr}");
    assert!(shown.count("/metrics") > 0, "no /metrics answer:\n{stderr}");
    assert!(shown.text("/metrics").contains("defender_kafka_broker_up 0"));
    assert!(shown.text("/readyz").contains("503 no kafka broker connection up"), "{}", shown.text("/readyz"));
    assert!(shown.text("/healthz").contains("200 ok"));
    assert!(shown.count("summary") == 1, "the summary is written on SIGTERM");
}

/// OAUTHBEARER: librdkafka asks the client secret credential for an Event Hubs token, Entra
/// (a closed port) does not answer.
#[test]
fn a_kafka_client_secret_never_shows_while_entra_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, entra) = (closed_port(), closed_port());
    let auth = format!(
        "[source.kafka.auth]\nmethod = \"client_secret\"\ntenant_id = \"tenant-1\"\nclient_id = \"app-1\"\n\
         client_secret_env = \"DI_LEAK_CLIENT_SECRET\"\nauthority_host = \"https://127.0.0.1:{entra}\"\n"
    );
    let config = kafka_config(dir.path(), &format!("127.0.0.1:{broker}"), &auth);
    let mut run = Run::start(
        dir.path(),
        "kafka-oauth",
        &["--config", config.to_str().unwrap(), "--json"],
        &[("DI_LEAK_CLIENT_SECRET", CLIENT_SECRET)],
        true,
    );
    let mut shown = Shown::default();
    assert!(run.poll(Duration::from_secs(5), &mut shown), "the daemon exited early:\n{}", run.stderr());
    let status = run.terminate(Duration::from_secs(30)).expect("the daemon stops on SIGTERM");
    run.collect(&mut shown);
    shown.assert_no_secret();

    assert!(status.success(), "SIGTERM ends the run with 0, got {status}:\n{}", run.stderr());
    let stderr = shown.text("stderr");
    assert!(stderr.contains("cannot get an entra token"), "the token request failed and said so:\n{stderr}");
    assert!(shown.count("/metrics") > 0, "no /metrics answer:\n{stderr}");
}

/// The local token endpoint refuses the secret (401 invalid_client): a permanent error that
/// ends the run.
#[test]
fn a_sentinel_client_secret_never_shows_when_entra_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let server = runtime
        .block_on(TestServer::start(ServerConfig::new(BTreeMap::new(), "tenant-1", "app-1", "the-right-secret")))
        .unwrap();
    let ca = write(dir.path(), "ca.pem", &server.ca_pem);
    let config = sentinel_config(dir.path(), &server.endpoint, &server.authority, Some(&ca));
    let archive = dir.path().join("archive");
    let mut run = Run::start(
        dir.path(),
        "sentinel-refused",
        &[
            "--config",
            config.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--archive",
            archive.to_str().unwrap(),
        ],
        &[("DI_LEAK_CLIENT_SECRET", CLIENT_SECRET)],
        true,
    );
    let mut shown = Shown::default();
    run.poll(Duration::from_secs(30), &mut shown);
    let status = run.wait(Duration::from_secs(30)).expect("a refused secret ends the run");
    run.collect(&mut shown);
    shown.assert_no_secret();

    assert!(!status.success(), "the run fails when Entra refuses the secret:\n{}", run.stderr());
    let stderr = shown.text("stderr");
    assert!(stderr.contains("invalid_client") || stderr.contains("invalid client secret"), "{stderr}");
    assert!(stderr.contains("cannot get an entra token"), "{stderr}");
    assert!(server.requests().is_empty(), "nothing reached the ingestion endpoint without a token");
    drop(server);
    runtime.shutdown_timeout(Duration::from_secs(5));
}

/// Entra does not answer (closed port): the sink retries the token request, logging each try,
/// until SIGTERM (or SIGKILL: a stuck Sentinel path need not end the run in bounded time).
#[test]
fn a_sentinel_client_secret_never_shows_while_entra_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let entra = format!("https://127.0.0.1:{}", closed_port());
    let endpoint = format!("https://127.0.0.1:{}", closed_port());
    let config = sentinel_config(dir.path(), &endpoint, &entra, None);
    let archive = dir.path().join("archive");
    let mut run = Run::start(
        dir.path(),
        "sentinel-unreachable",
        &[
            "--config",
            config.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--archive",
            archive.to_str().unwrap(),
        ],
        &[("DI_LEAK_CLIENT_SECRET", CLIENT_SECRET)],
        true,
    );
    let mut shown = Shown::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !run.stderr().contains("retrying token request") {
        assert!(Instant::now() < deadline, "no token retry logged:\n{}", run.stderr());
        assert!(run.poll(Duration::from_millis(500), &mut shown), "the run ended:\n{}", run.stderr());
    }
    run.poll(Duration::from_secs(2), &mut shown);
    run.terminate(Duration::from_secs(3));
    run.collect(&mut shown);
    shown.assert_no_secret();

    let stderr = shown.text("stderr");
    assert!(stderr.contains(&entra.replace("https://", "")), "the error names the token endpoint:\n{stderr}");
    assert!(shown.count("/metrics") > 0, "no /metrics answer:\n{stderr}");
}

/// A SAS token pasted into the archive URL (on the command line, in the config, as a pasted
/// blob SAS URL, in the dry-run directory) is refused, and the error does not repeat it.
#[test]
fn a_sas_token_in_an_archive_url_is_refused_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let input = input.to_str().unwrap();
    let blob = format!("http://127.0.0.1:{}", closed_port());
    let emulator = [("AZURE_STORAGE_USE_EMULATOR", "true"), ("AZURITE_BLOB_STORAGE_URL", blob.as_str())];
    let from_config = write(dir.path(), "sas.toml", &format!("[archive]\nurl = \"az://archive/defender?{SAS}\"\n"));
    let dry_run = write(
        dir.path(),
        "dry.toml",
        &format!("[tables.DeviceProcessEvents]\nsentinel = true\n[sentinel]\ndry_run_dir = \"az://bodies/x?{SAS}\"\n"),
    );
    let archive = dir.path().join("archive");
    let arg = |url: String| vec!["--input".to_string(), input.to_string(), "--archive".into(), url];
    let with_config = |config: &Path, rest: &[&str]| {
        let mut args = vec!["--config".to_string(), config.to_str().unwrap().to_string()];
        args.extend(rest.iter().map(|a| a.to_string()));
        args
    };
    let cases = [
        ("az", arg(format!("az://archive/defender?{SAS}")), "az://archive/defender?***"),
        (
            "abfss",
            arg(format!("abfss://archive@devstoreaccount1.dfs.core.windows.net/d?{SAS}")),
            "abfss://archive@devstoreaccount1.dfs.core.windows.net/d?***",
        ),
        (
            "https",
            arg(format!("https://devstoreaccount1.blob.core.windows.net/archive/d?{SAS}")),
            "use abfss://archive@devstoreaccount1.dfs.core.windows.net/d",
        ),
        ("config", with_config(&from_config, &["--input", input]), "az://archive/defender?***"),
        (
            "dry-run",
            with_config(&dry_run, &["--input", input, "--archive", archive.to_str().unwrap()]),
            "az://bodies/x?***",
        ),
    ];
    for (name, args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut run = Run::start(dir.path(), name, &args, &emulator, false);
        let status = run.wait(Duration::from_secs(30)).expect("a refused URL ends the run at once");
        let mut shown = Shown::default();
        run.collect(&mut shown);
        shown.assert_no_secret();
        let stderr = shown.text("stderr");
        assert_eq!(status.code(), Some(2), "{name}: refused:\n{stderr}");
        assert!(stderr.contains(expected), "{name}: the error shows the URL without the token:\n{stderr}");
        assert!(stderr.contains("AZURE_STORAGE_SAS_KEY"), "{name}: and says where the token goes:\n{stderr}");
    }
}

/// The storage credentials from the environment, refused by Azurite (403): the run fails and
/// says why.
#[test]
fn storage_credentials_never_show_when_azurite_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let blob = infra("DI_AZURITE_BLOB");
    let blob = blob.trim_end_matches("/devstoreaccount1");
    for (name, var, value) in
        [("sas-env", "AZURE_STORAGE_SAS_KEY", SAS), ("account-key", "AZURE_STORAGE_ACCOUNT_KEY", ACCOUNT_KEY)]
    {
        let envs = [("AZURE_STORAGE_USE_EMULATOR", "true"), ("AZURITE_BLOB_STORAGE_URL", blob), (var, value)];
        let args = ["--input", input.to_str().unwrap(), "--archive", "az://leak-test/defender"];
        let mut run = Run::start(dir.path(), name, &args, &envs, true);
        let mut shown = Shown::default();
        run.poll(Duration::from_secs(60), &mut shown);
        let status = run.wait(Duration::from_secs(60)).expect("a refused credential ends the run");
        run.collect(&mut shown);
        shown.assert_no_secret();
        let stderr = shown.text("stderr");
        assert!(!status.success(), "{name}: the run fails:\n{stderr}");
        assert!(stderr.contains("403"), "{name}: Azurite's refusal is shown:\n{stderr}");
    }
}

/// The SAS token from the environment while the blob endpoint does not answer: object_store
/// retries each write, logging every retry with its error (shown here with object_store=info).
/// A write being retried does not end on SIGTERM: the process is killed 3 s after it.
#[test]
fn a_storage_sas_token_never_shows_while_the_blob_endpoint_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let blob = format!("http://127.0.0.1:{}", closed_port());
    let envs = [
        ("AZURE_STORAGE_USE_EMULATOR", "true"),
        ("AZURITE_BLOB_STORAGE_URL", blob.as_str()),
        ("AZURE_STORAGE_SAS_KEY", SAS),
        ("RUST_LOG", "warn,object_store=info,defender_ingest=info,defender_sinks=info,defender_pipeline=info"),
    ];
    let args = ["--input", input.to_str().unwrap(), "--archive", "az://leak-test/defender", "--log-format", "text"];
    let mut run = Run::start(dir.path(), "blob-down", &args, &envs, true);
    let mut shown = Shown::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while run.stderr().matches("backing off").count() < 3 {
        assert!(Instant::now() < deadline, "no retry logged:\n{}", run.stderr());
        assert!(run.poll(Duration::from_millis(500), &mut shown), "the run ended:\n{}", run.stderr());
    }
    run.terminate(Duration::from_secs(3));
    run.collect(&mut shown);
    shown.assert_no_secret();

    let stderr = shown.text("stderr");
    assert!(stderr.contains("Encountered transport error"), "{stderr}");
    assert!(shown.count("/metrics") > 0, "no /metrics answer:\n{stderr}");
}

/// Secrets put in the config file by mistake, where a variable name belongs or under a key
/// that does not exist: the errors name the key and the line, never the value.
#[test]
fn secrets_put_in_the_config_by_mistake_are_not_quoted_back() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let input = input.to_str().unwrap();
    let archive = dir.path().join("archive");
    let archive = archive.to_str().unwrap();
    let kafka = "[source.kafka]\nbootstrap = \"127.0.0.1:9\"\ntopics = [\"t\"]\n";
    let sentinel = "[tables.DeviceProcessEvents]\nsentinel = true\n[sentinel]\nendpoint = \"https://127.0.0.1:9\"\n\
                    dcr_immutable_id = \"dcr-1\"\n[sentinel.auth]\nmethod = \"client_secret\"\ntenant_id = \"t\"\n\
                    client_id = \"c\"\n";
    let cases = [
        (
            "cs-as-env-name",
            format!("{kafka}connection_string_env = \"{CONNECTION_STRING}\"\n"),
            "source.kafka.connection_string_env",
        ),
        (
            "cs-unknown-key",
            format!("{kafka}plaintext = true\nconnection_string = \"{CONNECTION_STRING}\"\n"),
            "unknown field `connection_string`",
        ),
        (
            "cs-property",
            format!(
                "{kafka}plaintext = true\n[source.kafka.properties]\n\"sasl.password\" = \"{CONNECTION_STRING}\"\n"
            ),
            "source.kafka.properties.sasl.password",
        ),
        (
            "secret-as-env-name",
            format!("{sentinel}client_secret_env = \"{CLIENT_SECRET}\"\n"),
            "sentinel.auth.client_secret_env",
        ),
        (
            "secret-unknown-key",
            format!("{sentinel}client_secret = \"{CLIENT_SECRET}\"\n"),
            "unknown field `client_secret`",
        ),
        (
            "sas-unknown-key",
            format!("[archive]\nurl = \"az://archive/d\"\nsas_token = \"{SAS}\"\n"),
            "unknown field `sas_token`",
        ),
    ];
    for (name, text, expected) in cases {
        let config = write(dir.path(), &format!("{name}.toml"), &text);
        let mut args = vec!["--config", config.to_str().unwrap(), "--archive", archive];
        if !text.starts_with("[source.kafka]") {
            args.extend(["--input", input]); // (--input would replace the Kafka source)
        }
        let mut run = Run::start(dir.path(), name, &args, &[], false);
        let status = run.wait(Duration::from_secs(30)).expect("a config mistake ends the run at once");
        let mut shown = Shown::default();
        run.collect(&mut shown);
        shown.assert_no_secret();
        let stderr = shown.text("stderr");
        assert_eq!(status.code(), Some(2), "{name}: refused:\n{stderr}");
        assert!(stderr.contains(expected), "{name}: the error names the key:\n{stderr}");
    }
}
