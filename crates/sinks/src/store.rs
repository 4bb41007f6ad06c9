//! Archive URLs → object stores.
//!
//! Accepted: a plain path or `file://` URL (a local directory, created if missing), `az://` /
//! `azure://<container>/<prefix>` and `abfss://<filesystem>@<account>.dfs.core.windows.net/<prefix>`
//! (credentials from the environment: `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`,
//! `AZURE_STORAGE_SAS_KEY`, `AZURE_CLIENT_ID` + `AZURE_FEDERATED_TOKEN_FILE` for workload
//! identity, or managed identity; `AZURE_STORAGE_USE_EMULATOR=true` with
//! `AZURITE_BLOB_STORAGE_URL` for Azurite).
//!
//! An archive URL is shown in logs, errors and the run summary, so it never carries a secret:
//! a URL with a query string (the SAS token of a pasted "Blob SAS URL",
//! `...?sv=...&sig=...`) or a password is refused, with an error that shows the URL without
//! them (`?***`) and says where the token goes instead (`AZURE_STORAGE_SAS_KEY`). An
//! `https://<account>.blob.core.windows.net/<container>/<prefix>` URL is refused the same way
//! and the error names the `abfss://` URL to use. [`redact`] is what every message shows.

use std::sync::Arc;

use object_store::{ObjectStore, azure::MicrosoftAzureBuilder, local::LocalFileSystem, path::Path};
use url::Url;

/// Why an archive URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("archive url `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("archive directory `{dir}`: {source}")]
    Local {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("archive url `{url}`: {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

/// An object store and the prefix inside it under which everything is written.
#[derive(Debug, Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    /// The URL for messages: as given (URLs holding credentials are refused, see the module
    /// documentation), through [`redact`].
    pub display: String,
}

/// `url` as messages show it: without its query string, fragment and password (each replaced by
/// `***`), since those are where credentials hide. A plain path (no `scheme://`) is shown as is.
pub fn redact(url: &str) -> String {
    if !url.contains("://") {
        return url.to_string();
    }
    match Url::parse(url) {
        Ok(mut parsed) => {
            let query = parsed.query().is_some();
            let fragment = parsed.fragment().is_some();
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.set_query(None);
            parsed.set_fragment(None);
            let mut shown = parsed.to_string();
            if query {
                shown.push_str("?***");
            }
            if fragment {
                shown.push_str("#***");
            }
            shown
        }
        // Unparsable: keep the scheme and whatever precedes a `?`, `#` or `@`.
        Err(_) => match url.find(['?', '#', '@']) {
            Some(at) => format!("{}***", &url[..at + 1]),
            None => url.to_string(),
        },
    }
}

/// Why a URL holding a credential is refused (nothing when it holds none).
fn credential_in(url: &str, scheme: &str) -> Option<String> {
    let parsed = Url::parse(url).ok()?;
    let azure = matches!(scheme, "az" | "azure" | "abfs" | "abfss" | "https");
    if parsed.password().is_some() {
        return Some("a password does not go in the archive URL, which logs, errors and the run summary show".into());
    }
    parsed.query()?;
    Some(if azure {
        "a query string (a SAS token?) does not go in the archive URL, which logs, errors and the run summary \
         show: give the URL without `?...` and the SAS token in AZURE_STORAGE_SAS_KEY"
            .into()
    } else {
        "a query string is not part of an archive location".into()
    })
}

/// For `https://<account>.blob.core.windows.net/<container>/<prefix>` (as the portal shows a
/// container): the archive URL to use instead.
fn https_hint(url: &str) -> String {
    let parsed = Url::parse(url).ok();
    let account = parsed
        .as_ref()
        .and_then(|u| u.host_str())
        .and_then(|h| h.strip_suffix(".blob.core.windows.net").or_else(|| h.strip_suffix(".dfs.core.windows.net")));
    match (account, &parsed) {
        (Some(account), Some(u)) => {
            let path = u.path().trim_matches('/');
            let (container, prefix) = path.split_once('/').unwrap_or((path, ""));
            let container = if container.is_empty() { "<container>" } else { container };
            format!("use abfss://{container}@{account}.dfs.core.windows.net/{prefix}")
        }
        _ => "expected a path, file://, az:// or abfss://".into(),
    }
}

/// Opens the object store an archive URL names.
pub fn open(url: &str) -> Result<Location, StoreError> {
    let shown = redact(url);
    let bad = |reason: &str| StoreError::Url { url: shown.clone(), reason: reason.to_string() };
    if let Some((scheme, _)) = url.split_once("://") {
        let credential = credential_in(url, scheme);
        if scheme == "https" {
            let also = if credential.is_some() {
                "; a SAS token goes in AZURE_STORAGE_SAS_KEY, never in the URL (logs, errors and the run summary show it)"
            } else {
                ""
            };
            return Err(bad(&format!("an https:// URL is not an archive location: {}{also}", https_hint(url))));
        }
        if let Some(why) = credential.filter(|_| matches!(scheme, "file" | "az" | "azure" | "abfs" | "abfss")) {
            return Err(bad(&why));
        }
    }
    let local_dir = match url.split_once("://") {
        None => Some(std::path::PathBuf::from(url)),
        Some(("file", _)) => Some(
            Url::parse(url)
                .map_err(|e| bad(&e.to_string()))?
                .to_file_path()
                .map_err(|()| bad("not an absolute local path"))?,
        ),
        Some(("az" | "azure" | "abfs" | "abfss", _)) => None,
        Some((scheme, _)) => {
            return Err(bad(&format!("unsupported scheme `{scheme}` (expected a path, file://, az:// or abfss://)")));
        }
    };
    if let Some(dir) = local_dir {
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Local { dir: dir.display().to_string(), source })?;
        let store = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|source| StoreError::Store { url: shown.clone(), source })?
            .with_automatic_cleanup(true);
        return Ok(Location { store: Arc::new(store), prefix: Path::default(), display: shown });
    }
    let parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    let env_set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty());
    let account_in_url = parsed.host_str().is_some_and(|h| h.contains(".dfs.") || h.contains(".blob."));
    if !account_in_url && !env_set("AZURE_STORAGE_ACCOUNT_NAME") && !env_set("AZURE_STORAGE_USE_EMULATOR") {
        return Err(bad("no storage account: set AZURE_STORAGE_ACCOUNT_NAME, or name it in the URL \
             (abfss://<filesystem>@<account>.dfs.core.windows.net/<prefix>)"));
    }
    let store = MicrosoftAzureBuilder::from_env()
        .with_url(url)
        .build()
        .map_err(|source| StoreError::Store { url: shown.clone(), source })?;
    // az://container/prefix: the container is the host; abfss://fs@account.../prefix: the path.
    let prefix = Path::from(parsed.path().trim_matches('/'));
    Ok(Location { store: Arc::new(store), prefix, display: shown })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_schemes_with_the_expected_forms() {
        let err = open("s3://bucket/x").unwrap_err().to_string();
        assert_eq!(
            err,
            "archive url `s3://bucket/x`: unsupported scheme `s3` (expected a path, file://, az:// or abfss://)"
        );
    }

    #[test]
    fn azure_urls_give_the_container_and_prefix() {
        // Opening builds the client only: nothing is contacted until the first write.
        let abfss = open("abfss://lake@account.dfs.core.windows.net/security/defender").unwrap();
        assert_eq!(abfss.prefix.as_ref(), "security/defender");
        let abfss = open("abfss://lake@account.dfs.core.windows.net").unwrap();
        assert_eq!(abfss.prefix.as_ref(), "");
    }

    #[test]
    fn an_az_url_without_an_account_says_where_to_put_it() {
        if std::env::var_os("AZURE_STORAGE_ACCOUNT_NAME").is_some()
            || std::env::var_os("AZURE_STORAGE_USE_EMULATOR").is_some()
        {
            return; // the environment names an account: nothing to report
        }
        let err = open("az://archive/defender").unwrap_err().to_string();
        assert_eq!(
            err,
            "archive url `az://archive/defender`: no storage account: set AZURE_STORAGE_ACCOUNT_NAME, or name it in \
             the URL (abfss://<filesystem>@<account>.dfs.core.windows.net/<prefix>)"
        );
    }

    const SAS: &str = "sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&se=2030-01-01T00:00:00Z&sig=c2VjcmV0LXNpZw%3D";

    #[test]
    fn a_sas_token_in_the_url_is_refused_without_showing_it() {
        for url in [
            format!("az://archive/defender?{SAS}"),
            format!("abfss://lake@account.dfs.core.windows.net/defender?{SAS}"),
            format!("azure://archive?{SAS}"),
        ] {
            let err = open(&url).unwrap_err().to_string();
            assert!(!err.contains("sig=") && !err.contains("c2VjcmV0"), "{err}");
            assert!(err.contains("?***`: a query string (a SAS token?) does not go in the archive URL"), "{err}");
            assert!(err.contains("AZURE_STORAGE_SAS_KEY"), "{err}");
        }
        let err = open(&format!("az://archive/defender?{SAS}")).unwrap_err().to_string();
        assert!(err.starts_with("archive url `az://archive/defender?***`: "), "{err}");
    }

    #[test]
    fn a_pasted_blob_sas_url_names_the_abfss_url_to_use() {
        let url = format!("https://account.blob.core.windows.net/archive/security/defender?{SAS}");
        let err = open(&url).unwrap_err().to_string();
        assert_eq!(
            err,
            "archive url `https://account.blob.core.windows.net/archive/security/defender?***`: an https:// URL is \
             not an archive location: use abfss://archive@account.dfs.core.windows.net/security/defender; a SAS \
             token goes in AZURE_STORAGE_SAS_KEY, never in the URL (logs, errors and the run summary show it)"
        );
        let err = open("https://account.blob.core.windows.net/archive").unwrap_err().to_string();
        assert!(err.ends_with("use abfss://archive@account.dfs.core.windows.net/"), "{err}");
        let err = open("https://example.com/x").unwrap_err().to_string();
        assert!(err.ends_with("expected a path, file://, az:// or abfss://"), "{err}");
    }

    #[test]
    fn redaction_drops_queries_fragments_and_passwords() {
        assert_eq!(redact(&format!("az://c/p?{SAS}")), "az://c/p?***");
        assert_eq!(
            redact("abfss://fs:pw@a.dfs.core.windows.net/p#frag"),
            "abfss://fs:***@a.dfs.core.windows.net/p#***"
        );
        assert_eq!(redact("out/archive?x"), "out/archive?x", "a plain path is a path");
        assert_eq!(redact("az://[bad/p?sig=x"), "az://[bad/p?***");
        let err = open("abfss://fs:pw@a.dfs.core.windows.net/p").unwrap_err().to_string();
        assert!(!err.contains("pw@") && err.contains("a password does not go in the archive URL"), "{err}");
        let err = open("s3://bucket/x?sig=abc").unwrap_err().to_string();
        assert!(err.starts_with("archive url `s3://bucket/x?***`: unsupported scheme `s3`"), "{err}");
        let err = open("file:///tmp/archive?sig=abc").unwrap_err().to_string();
        assert_eq!(err, "archive url `file:///tmp/archive?***`: a query string is not part of an archive location");
    }

    #[test]
    fn plain_paths_and_file_urls_open_a_local_directory() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        open(sub.to_str().unwrap()).unwrap();
        assert!(sub.is_dir());
        let url = format!("file://{}", dir.path().join("c").display());
        open(&url).unwrap();
        assert!(dir.path().join("c").is_dir());
    }
}
