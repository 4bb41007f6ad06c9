//! The config of a command: the file read ([`load`]), `--input` and `--archive` applied
//! ([`resolve`]), and what the file only names made real: secrets from the environment, the
//! certificate and CA files ([`auth`], [`sentinel_config`]). Its types, defaults and checks are
//! `defender_config`'s (crates/config). `config check` ([`command`]) runs every check that
//! needs neither the network nor the environment.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, bail};
use clap::Subcommand;
use defender_config::{ArchiveSection, AuthSection, Config, FilesSource, LiveSentinel, SentinelTarget};
use defender_core::Catalog;
use defender_sinks::sentinel::{AuthConfig, Secret, SentinelConfig};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a config file as `run` would, without connecting to anything and without reading
    /// secrets from the environment: syntax and values, a source and an archive, the start
    /// position, and the Sentinel section (a DCR and an endpoint for every table sent there).
    /// Exit 0 and one line of summary when it is fine; exit 2 and what is wrong otherwise.
    Check {
        /// The config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// The command the config is for: `estimate` reads and writes no archive, so a config
        /// without `[archive]` is fine for it.
        #[arg(long = "for", value_enum, default_value_t = Purpose::Run)]
        purpose: Purpose,
    },
}

/// What `config check` checks a config for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Purpose {
    Run,
    Estimate,
}

pub fn command(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check { config: path, purpose } = cmd;
    let config = resolve(Some(&path), &[], None, false)?;
    if purpose == Purpose::Run && config.archive.is_none() {
        bail!(
            "no archive configured: `run` needs an [archive] section with `url` (or --archive on its command \
             line); a config for `estimate` only is checked with `config check --for estimate`"
        );
    }
    let source = match (&config.source.kafka, &config.source.eventhubs, &config.source.files) {
        (Some(k), _, _) => {
            k.start_position().context("source.kafka.start")?;
            format!("kafka {} topics {}", k.bootstrap, k.topics.join(","))
        }
        (None, Some(e), _) => {
            // The container URL (no SAS in it) and the consumer group: where the checkpoints go.
            let container = e.checkpoint_container_url()?;
            format!(
                "eventhubs {}/{} consumer group {} checkpoints {container}",
                e.namespace, e.event_hub, e.consumer_group
            )
        }
        (None, None, Some(f)) => format!("files {}", f.paths.join(",")),
        (None, None, None) => match config.source.history()? {
            Some(h) => match h.poll_interval {
                Some(every) => format!("{} export at {}, polled every {:?}", h.kind.as_str(), h.location, every),
                None => format!("{} history at {}", h.kind.as_str(), h.location),
            },
            None => unreachable!("resolve checks there is a source"),
        },
    };
    let catalog = Catalog::embedded();
    let sentinel = match (config.sentinel_target(&catalog)?, config.policy().any_sentinel()) {
        (Some(SentinelTarget::DryRun { dir, .. }), _) => format!("sentinel dry run into {dir}"),
        (Some(SentinelTarget::Live(live)), _) => {
            // The credential is resolved at run time (secrets, token files); any one stands in
            // for it here: the checks of endpoints, DCRs and tables do not depend on it.
            let c = live.into_config(AuthConfig::AzureCli, None)?;
            format!("sentinel {} table(s) to {} DCR(s)", c.tables.len(), c.endpoints().len())
        }
        (None, true) => bail!("the config sends tables to Sentinel (`sentinel = true`) but has no [sentinel] section"),
        (None, false) => "no sentinel".to_string(),
    };
    let archive = config.archive.as_ref().map_or("none", |a| a.url.as_str());
    println!("ok: {}: source {source}, archive {archive}, {sentinel}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Reads and checks a config file; errors name the file, the line and what was expected.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
    Config::parse(&text).with_context(|| format!("config {}", path.display()))
}

/// The config of a command: the file (optional when the command line says enough) with
/// `--input` and `--archive` applied; checks that a source (and, if `needs_archive`, an
/// archive) is configured.
pub fn resolve(
    path: Option<&Path>,
    input: &[String],
    archive: Option<&str>,
    needs_archive: bool,
) -> anyhow::Result<Config> {
    let mut config = match path {
        Some(path) => load(path)?,
        None if !input.is_empty() && (archive.is_some() || !needs_archive) => Config::default(),
        None if needs_archive => {
            bail!("no --config given: pass --config FILE, or both --input PATH... and --archive URL")
        }
        None => bail!("no --config given: pass --config FILE or --input PATH..."),
    };
    if !input.is_empty() {
        config.source.files = Some(FilesSource { paths: input.to_vec() });
    }
    if let Some(url) = archive {
        match &mut config.archive {
            Some(a) => a.url = url.to_string(),
            None => config.archive = Some(ArchiveSection::with_url(url)),
        }
    }
    if !input.is_empty() {
        // --input replaces the configured source
        (config.source.kafka, config.source.capture, config.source.storage, config.source.eventhubs) =
            (None, None, None, None);
    }
    if config.source.named().is_empty() {
        bail!(
            "no source configured: add a [source.files] section with `paths`, a [source.kafka], \
             [source.eventhubs], [source.capture] or [source.storage] section, or pass --input"
        );
    }
    if needs_archive && config.archive.is_none() {
        bail!("no archive configured: add an [archive] section with `url`, or pass --archive");
    }
    Ok(config)
}

/// The settings of a live Sentinel sink: its credential resolved ([`auth`]) and its extra CA
/// read.
pub fn sentinel_config(live: LiveSentinel) -> anyhow::Result<SentinelConfig> {
    let auth = auth(&live.auth, "sentinel.auth")?;
    let ca = match &live.ca_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("sentinel.ca_file: cannot read {}", path.display()))?,
        ),
        None => None,
    };
    Ok(live.into_config(auth, ca)?)
}

/// The credential settings, with secrets and workload identity defaults read from the
/// environment; `at` names the section in errors.
pub fn auth(section: &AuthSection, at: &str) -> anyhow::Result<AuthConfig> {
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    Ok(match section {
        AuthSection::ClientSecret { tenant_id, client_id, client_secret_env, authority_host } => {
            let secret = env(client_secret_env).ok_or_else(|| {
                anyhow::anyhow!("{at}.client_secret_env: environment variable {client_secret_env} is not set")
            })?;
            AuthConfig::ClientSecret {
                tenant: tenant_id.clone(),
                client_id: client_id.clone(),
                secret: Secret::new(secret),
                authority_host: authority_host.clone(),
            }
        }
        AuthSection::ClientCertificate { tenant_id, client_id, certificate_file, authority_host } => {
            let key = format!("{at}.certificate_file");
            let bytes = std::fs::read(certificate_file)
                .with_context(|| format!("{key}: cannot read {}", certificate_file.display()))?;
            let pem = String::from_utf8(bytes).ok().filter(|pem| pem.contains("-----BEGIN")).ok_or_else(|| {
                anyhow::anyhow!(
                    "{key}: {} is not PEM (expected the private key and the certificate, PEM-encoded)",
                    certificate_file.display()
                )
            })?;
            AuthConfig::ClientCertificate {
                tenant: tenant_id.clone(),
                client_id: client_id.clone(),
                certificate: Secret::new(pem),
                authority_host: authority_host.clone(),
            }
        }
        AuthSection::WorkloadIdentity { tenant_id, client_id, token_file, authority_host } => {
            let need = |v: &Option<String>, var: &str, key: &str| {
                v.clone().or_else(|| env(var)).ok_or_else(|| anyhow::anyhow!("{at}.{key}: not set and {var} is empty"))
            };
            AuthConfig::WorkloadIdentity {
                tenant: need(tenant_id, "AZURE_TENANT_ID", "tenant_id")?,
                client_id: need(client_id, "AZURE_CLIENT_ID", "client_id")?,
                token_file: match token_file {
                    Some(f) => f.clone(),
                    None => env("AZURE_FEDERATED_TOKEN_FILE")
                        .ok_or_else(|| {
                            anyhow::anyhow!("{at}.token_file: not set and AZURE_FEDERATED_TOKEN_FILE is empty")
                        })?
                        .into(),
                },
                authority_host: authority_host.clone(),
            }
        }
        AuthSection::ManagedIdentity { client_id } => AuthConfig::ManagedIdentity { client_id: client_id.clone() },
        AuthSection::AzureCli => AuthConfig::AzureCli,
    })
}

#[cfg(test)]
mod tests {
    use defender_config::SentinelTarget;
    use defender_core::Catalog;

    use super::*;

    #[test]
    fn a_client_certificate_file_is_read_and_an_unreadable_one_names_the_key() {
        let dir = std::env::temp_dir().join(format!("defender-ingest-cert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n";
        std::fs::write(dir.join("app.pem"), pem).unwrap();
        std::fs::write(dir.join("app.pfx"), [0x30, 0x82, 0xff, 0xfe]).unwrap();
        let config = |file: &Path| {
            let text = format!(
                "[tables.DeviceEvents]\nsentinel = true\n\
                 [sentinel]\nendpoint = \"https://dce.eastus-1.ingest.monitor.azure.com\"\ndcr_immutable_id = \"dcr-1\"\n\
                 [sentinel.auth]\nmethod = \"client_certificate\"\ntenant_id = \"t\"\nclient_id = \"c\"\ncertificate_file = {:?}\n",
                file.to_str().unwrap()
            );
            Config::parse(&text).unwrap()
        };
        let catalog = Catalog::embedded();
        let resolved = |file: &Path| match config(file).sentinel_target(&catalog).unwrap() {
            Some(SentinelTarget::Live(live)) => sentinel_config(*live),
            other => panic!("a live target, not {other:?}"),
        };
        let live = resolved(&dir.join("app.pem")).unwrap();
        let AuthConfig::ClientCertificate { certificate, client_id, .. } = &live.auth else {
            panic!("{:?}", live.auth)
        };
        assert_eq!((certificate.expose(), client_id.as_str()), (pem, "c"));
        let err = resolved(&dir.join("missing.pem")).unwrap_err().to_string();
        assert!(err.starts_with("sentinel.auth.certificate_file: cannot read "), "{err}");
        let err = resolved(&dir.join("app.pfx")).unwrap_err().to_string();
        assert!(err.starts_with("sentinel.auth.certificate_file: ") && err.contains("is not PEM"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
