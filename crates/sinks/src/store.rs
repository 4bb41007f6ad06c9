//! Archive URLs → object stores.
//!
//! Accepted: a plain path or `file://` URL (a local directory, created if missing), `az://` /
//! `azure://<container>/<prefix>` and `abfss://<filesystem>@<account>.dfs.core.windows.net/<prefix>`
//! (credentials from the environment: `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`,
//! `AZURE_STORAGE_SAS_KEY`, `AZURE_CLIENT_ID` + `AZURE_FEDERATED_TOKEN_FILE` for workload
//! identity, or managed identity; `AZURE_STORAGE_USE_EMULATOR=true` with
//! `AZURITE_BLOB_STORAGE_URL` for Azurite).

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
    /// The URL as given, for messages (it never holds a secret: credentials come from the
    /// environment).
    pub display: String,
}

/// Opens the object store an archive URL names.
pub fn open(url: &str) -> Result<Location, StoreError> {
    let bad = |reason: &str| StoreError::Url { url: url.to_string(), reason: reason.to_string() };
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
            .map_err(|source| StoreError::Store { url: url.to_string(), source })?
            .with_automatic_cleanup(true);
        return Ok(Location { store: Arc::new(store), prefix: Path::default(), display: url.to_string() });
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
        .map_err(|source| StoreError::Store { url: url.to_string(), source })?;
    // az://container/prefix: the container is the host; abfss://fs@account.../prefix: the path.
    let prefix = Path::from(parsed.path().trim_matches('/'));
    Ok(Location { store: Arc::new(store), prefix, display: url.to_string() })
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
