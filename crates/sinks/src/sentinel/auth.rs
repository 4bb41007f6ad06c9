//! Entra tokens for the Logs Ingestion API (scope `https://monitor.azure.com/.default`).
//!
//! Credentials come from `azure_identity` 1.0 (client secret, client certificate, workload
//! identity, managed identity, Azure CLI), with the authority host set through a custom cloud
//! configuration and the HTTP transport replaced by our own `reqwest` client (so a test CA
//! reaches the token endpoint too) and its retries turned off (the sink retries with its own
//! backoff). `Static` is a fixed token for tests. The client certificate credential (the
//! `client_certificate` feature, which links the system OpenSSL) takes PKCS#12; the PEM key and
//! certificate of [`AuthConfig::ClientCertificate`] are converted to it in memory.
//!
//! Invariants:
//! - a token is reused until 5 minutes before it expires, then fetched again; one fetch at a time
//!   (callers wait on the cache lock rather than all asking Entra at once);
//! - [`TokenSource::refresh`] (after a 401) builds a fresh credential, because the credentials
//!   keep their own cache and would hand back the refused token; concurrent 401s for the same
//!   token cause one refresh;
//! - secrets and tokens are never printed: [`Secret`]'s `Debug` is `***`, errors carry Entra's
//!   answer and the transport's failure (with the token endpoint's URL), never the request.

use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

use azure_core::{
    cloud::{CloudConfiguration, CustomConfiguration},
    credentials::TokenCredential,
    http::{ClientOptions, RetryOptions, Transport},
    time::OffsetDateTime,
};
use azure_identity::{
    AzureCliCredential, ClientAssertionCredentialOptions, ClientCertificateCredential,
    ClientCertificateCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use tokio::sync::Mutex;

/// The token audience of the public cloud's Logs Ingestion API.
pub const MONITOR_SCOPE: &str = "https://monitor.azure.com/.default";
/// The token audience of Event Hubs (its Kafka endpoint's OAUTHBEARER included).
pub const EVENT_HUBS_SCOPE: &str = "https://eventhubs.azure.net/.default";
/// Entra ID in the public cloud.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// A token is refreshed this long before it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A secret string: its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// How the sink gets its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    /// An app registration with a client secret.
    ClientSecret { tenant: String, client_id: String, secret: Secret, authority_host: String },
    /// An app registration with a certificate: `certificate` is PEM holding the unencrypted RSA
    /// private key and the certificate (first; any further certificates are its chain), as
    /// `az ad sp create-for-rbac --create-cert` writes. Entra gets a JWT signed with the key.
    ClientCertificate { tenant: String, client_id: String, certificate: Secret, authority_host: String },
    /// AKS workload identity: the federated token in `token_file` is exchanged for an Entra token.
    WorkloadIdentity { tenant: String, client_id: String, token_file: PathBuf, authority_host: String },
    /// The managed identity of the VM / node (user-assigned when `client_id` is given).
    ManagedIdentity { client_id: Option<String> },
    /// `az account get-access-token` (developer machines).
    AzureCli,
    /// A fixed bearer token (tests).
    Static(Secret),
}

impl AuthConfig {
    /// Client secret auth against the public cloud.
    pub fn client_secret(tenant: &str, client_id: &str, secret: impl Into<String>) -> Self {
        Self::ClientSecret {
            tenant: tenant.into(),
            client_id: client_id.into(),
            secret: Secret::new(secret),
            authority_host: DEFAULT_AUTHORITY_HOST.into(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        let nonempty = |key: &str, v: &str| {
            if v.trim().is_empty() { Err(format!("auth.{key} must not be empty")) } else { Ok(()) }
        };
        let authority = |v: &str| match url::Url::parse(v) {
            Ok(u) if u.scheme() == "https" => Ok(()),
            _ => Err(format!("auth.authority_host must be an https url, not {v:?}")),
        };
        match self {
            Self::ClientSecret { tenant, client_id, secret, authority_host } => {
                nonempty("tenant", tenant)?;
                nonempty("client_id", client_id)?;
                nonempty("secret", secret.expose())?;
                authority(authority_host)
            }
            Self::ClientCertificate { tenant, client_id, certificate, authority_host } => {
                nonempty("tenant", tenant)?;
                nonempty("client_id", client_id)?;
                nonempty("certificate", certificate.expose())?;
                authority(authority_host)
            }
            Self::WorkloadIdentity { tenant, client_id, token_file, authority_host } => {
                nonempty("tenant", tenant)?;
                nonempty("client_id", client_id)?;
                nonempty("token_file", &token_file.to_string_lossy())?;
                authority(authority_host)
            }
            Self::ManagedIdentity { client_id: Some(id) } => nonempty("client_id", id),
            Self::ManagedIdentity { client_id: None } | Self::AzureCli => Ok(()),
            Self::Static(token) => nonempty("token", token.expose()),
        }
    }
}

/// Getting a token failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot get an entra token: {message}")]
pub struct AuthError {
    pub message: String,
    /// Entra refused the credential itself (wrong secret, unknown app or tenant): retrying
    /// cannot help. Otherwise (network, 5xx) the caller retries with backoff.
    pub permanent: bool,
}

impl AuthError {
    fn from_azure(error: &azure_core::Error, permanent_default: bool) -> Self {
        // The credentials wrap the token endpoint's error: look for its HTTP status in the chain.
        let mut status = error.http_status().map(u16::from);
        let mut source = std::error::Error::source(error);
        while let (None, Some(s)) = (status, source) {
            status = s.downcast_ref::<azure_core::Error>().and_then(|e| e.http_status()).map(u16::from);
            source = s.source();
        }
        let permanent = match status {
            Some(400 | 401 | 403 | 404) => true,
            Some(_) => false,
            None => permanent_default,
        };
        Self { message: with_causes(error), permanent }
    }
}

/// `error` and its causes, so that a transport failure names the token endpoint and why
/// (`failed to execute request: error sending request for url (https://login.../token): ...
/// Connection refused`). The causes are the HTTP client's and Entra's answer: neither holds the
/// secret, which travels in the request body only.
fn with_causes(error: &azure_core::Error) -> String {
    let text = error.to_string();
    // azure_identity ends its message with a line pointing at its troubleshooting guide.
    let (head, guide) = text.split_once('\n').unwrap_or((&text, ""));
    let mut message = head.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        let cause = s.to_string();
        if !message.contains(&cause) {
            message.push_str(": ");
            message.push_str(&cause);
        }
        source = s.source();
    }
    if !guide.is_empty() {
        message.push_str(" (");
        message.push_str(guide.trim());
        message.push(')');
    }
    message
}

struct Cached {
    token: Arc<str>,
    /// None: never expires (static tokens).
    expires_on: Option<OffsetDateTime>,
}

/// Hands out bearer tokens, cached; see the module documentation.
pub struct TokenSource {
    config: AuthConfig,
    scope: String,
    http: reqwest::Client,
    credential: Mutex<Option<Arc<dyn TokenCredential>>>,
    cached: Mutex<Option<Cached>>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource").field("config", &self.config).finish_non_exhaustive()
    }
}

impl TokenSource {
    /// `http` is the client the credential uses to reach Entra (or the IMDS endpoint). Builds the
    /// credential now, so configuration errors show at start.
    pub fn new(config: AuthConfig, http: reqwest::Client) -> Result<Self, AuthError> {
        Self::with_scope(config, http, MONITOR_SCOPE)
    }

    /// Tokens for another audience, e.g. [`EVENT_HUBS_SCOPE`].
    pub fn with_scope(config: AuthConfig, http: reqwest::Client, scope: &str) -> Result<Self, AuthError> {
        let credential = build_credential(&config, &http)?;
        Ok(Self { config, scope: scope.into(), http, credential: Mutex::new(credential), cached: Mutex::new(None) })
    }

    /// A valid token and when it expires (None: never).
    pub async fn token_with_expiry(&self) -> Result<(Arc<str>, Option<OffsetDateTime>), AuthError> {
        self.token().await?;
        let cached = self.cached.lock().await;
        let c = cached.as_ref().expect("token() fills the cache");
        Ok((c.token.clone(), c.expires_on))
    }

    /// A valid token: the cached one unless it expires within [`REFRESH_MARGIN`].
    pub async fn token(&self) -> Result<Arc<str>, AuthError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && c.expires_on.is_none_or(|at| at - REFRESH_MARGIN > OffsetDateTime::now_utc())
        {
            return Ok(c.token.clone());
        }
        let fresh = self.fetch(false).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// After a 401 for `refused`: fetches a new token with a fresh credential, unless another
    /// caller already replaced `refused`.
    pub async fn refresh(&self, refused: &str) -> Result<Arc<str>, AuthError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && &*c.token != refused
        {
            return Ok(c.token.clone());
        }
        let fresh = self.fetch(true).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    async fn fetch(&self, rebuild: bool) -> Result<Cached, AuthError> {
        if let AuthConfig::Static(token) = &self.config {
            return Ok(Cached { token: token.expose().into(), expires_on: None });
        }
        let credential = {
            let mut slot = self.credential.lock().await;
            if rebuild {
                *slot = build_credential(&self.config, &self.http)?;
            }
            slot.clone().expect("only static auth has no credential")
        };
        let token =
            credential.get_token(&[self.scope.as_str()], None).await.map_err(|e| AuthError::from_azure(&e, false))?;
        tracing::debug!(expires_on = %token.expires_on, "got an entra token");
        Ok(Cached { token: token.token.secret().into(), expires_on: Some(token.expires_on) })
    }
}

fn client_options(http: &reqwest::Client, authority_host: Option<&str>) -> ClientOptions {
    // No retries inside the credential: the sink retries token requests with its own backoff
    // and logs each one.
    let mut options = ClientOptions {
        transport: Some(Transport::new(Arc::new(http.clone()))),
        retry: RetryOptions::none(),
        ..Default::default()
    };
    if let Some(host) = authority_host {
        let mut custom = CustomConfiguration::default();
        custom.authority_host = host.trim_end_matches('/').to_string();
        options.cloud = Some(Arc::new(CloudConfiguration::from(custom)));
    }
    options
}

fn build_credential(
    config: &AuthConfig,
    http: &reqwest::Client,
) -> Result<Option<Arc<dyn TokenCredential>>, AuthError> {
    let invalid = |e: azure_core::Error| AuthError::from_azure(&e, true);
    let credential: Arc<dyn TokenCredential> = match config {
        AuthConfig::Static(_) => return Ok(None),
        AuthConfig::ClientSecret { tenant, client_id, secret, authority_host } => {
            let options = ClientSecretCredentialOptions { client_options: client_options(http, Some(authority_host)) };
            ClientSecretCredential::new(
                tenant,
                client_id.clone(),
                azure_core::credentials::Secret::new(secret.expose().to_string()),
                Some(options),
            )
            .map_err(invalid)?
        }
        AuthConfig::ClientCertificate { tenant, client_id, certificate, authority_host } => {
            let options = ClientCertificateCredentialOptions {
                client_options: client_options(http, Some(authority_host)),
                ..Default::default()
            };
            ClientCertificateCredential::new(
                tenant.clone(),
                client_id.clone(),
                pkcs12_from_pem(certificate)?,
                Some(options),
            )
            .map_err(invalid)?
        }
        AuthConfig::WorkloadIdentity { tenant, client_id, token_file, authority_host } => {
            let options = WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions {
                    client_options: client_options(http, Some(authority_host)),
                },
                client_id: Some(client_id.clone()),
                tenant_id: Some(tenant.clone()),
                token_file_path: Some(token_file.clone()),
            };
            WorkloadIdentityCredential::new(Some(options)).map_err(invalid)?
        }
        AuthConfig::ManagedIdentity { client_id } => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options: client_options(http, None),
            };
            ManagedIdentityCredential::new(Some(options)).map_err(invalid)?
        }
        AuthConfig::AzureCli => AzureCliCredential::new(None).map_err(invalid)?,
    };
    Ok(Some(credential))
}

/// `azure_identity` takes PKCS#12: converts PEM (RSA key + certificate + chain) to an
/// unencrypted bundle. Errors name what is wrong, never the content.
fn pkcs12_from_pem(pem: &Secret) -> Result<azure_core::credentials::SecretBytes, AuthError> {
    use openssl::{pkcs12::Pkcs12, pkey::PKey, stack::Stack, x509::X509};
    let invalid = |what: &str, e: openssl::error::ErrorStack| AuthError {
        message: format!("auth.certificate: {what}: {e}"),
        permanent: true,
    };
    let pem = pem.expose().as_bytes();
    let key = PKey::private_key_from_pem(pem).map_err(|e| invalid("no unencrypted private key in the PEM", e))?;
    let mut certs = X509::stack_from_pem(pem).map_err(|e| invalid("the PEM certificates do not parse", e))?.into_iter();
    let cert = certs
        .next()
        .ok_or_else(|| AuthError { message: "auth.certificate: no certificate in the PEM".into(), permanent: true })?;
    let mut builder = Pkcs12::builder();
    builder.pkey(&key).cert(&cert);
    let mut chain = Stack::new().map_err(|e| invalid("cannot build the PKCS#12 bundle", e))?;
    for c in certs {
        chain.push(c).map_err(|e| invalid("cannot build the PKCS#12 bundle", e))?;
    }
    if !chain.is_empty() {
        builder.ca(chain);
    }
    let der = builder.build2("").and_then(|p| p.to_der()).map_err(|e| invalid("cannot build the PKCS#12 bundle", e))?;
    Ok(azure_core::credentials::SecretBytes::new(der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_or_display() {
        let auth = AuthConfig::client_secret("tenant-1", "app-1", "s3cr3t-value");
        let shown = format!("{auth:?} {:?} {}", Secret::new("s3cr3t-value"), Secret::new("s3cr3t-value"));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("***"));
        let shown = format!("{:?}", AuthConfig::Static(Secret::new("bearer-xyz")));
        assert!(!shown.contains("bearer-xyz"), "{shown}");
    }

    #[test]
    fn validation_names_the_missing_key() {
        let e = AuthConfig::client_secret("", "app", "s").validate().unwrap_err();
        assert_eq!(e, "auth.tenant must not be empty");
        let e = AuthConfig::client_secret("t", "app", "").validate().unwrap_err();
        assert_eq!(e, "auth.secret must not be empty");
        let AuthConfig::ClientSecret { tenant, client_id, secret, .. } = AuthConfig::client_secret("t", "a", "s")
        else {
            unreachable!()
        };
        let plain = AuthConfig::ClientSecret { tenant, client_id, secret, authority_host: "http://login".into() };
        assert!(plain.validate().unwrap_err().contains("auth.authority_host must be an https url"));
        let wi = AuthConfig::WorkloadIdentity {
            tenant: "t".into(),
            client_id: "c".into(),
            token_file: PathBuf::new(),
            authority_host: DEFAULT_AUTHORITY_HOST.into(),
        };
        assert_eq!(wi.validate().unwrap_err(), "auth.token_file must not be empty");
        assert!(AuthConfig::AzureCli.validate().is_ok());
    }

    #[test]
    fn a_certificate_that_is_not_pem_is_a_permanent_error_without_its_content() {
        let cert = |pem: &str| AuthConfig::ClientCertificate {
            tenant: "00000000-0000-0000-0000-000000000001".into(),
            client_id: "app".into(),
            certificate: Secret::new(pem),
            authority_host: DEFAULT_AUTHORITY_HOST.into(),
        };
        assert_eq!(cert(" ").validate().unwrap_err(), "auth.certificate must not be empty");
        assert!(!format!("{:?}", cert("top-secret-key")).contains("top-secret"));
        let e = TokenSource::new(cert("top-secret-key"), reqwest::Client::new()).unwrap_err();
        assert!(e.permanent && e.message.starts_with("auth.certificate: "), "{e}");
        assert!(!e.message.contains("top-secret"), "{e}");
    }

    #[tokio::test]
    async fn static_tokens_are_handed_out_and_refreshed_as_is() {
        let source = TokenSource::new(AuthConfig::Static(Secret::new("tok")), reqwest::Client::new()).unwrap();
        assert_eq!(&*source.token().await.unwrap(), "tok");
        assert_eq!(&*source.refresh("tok").await.unwrap(), "tok");
        assert!(!format!("{source:?}").contains("tok\""));
    }

    #[tokio::test]
    async fn an_unreachable_token_endpoint_is_a_transient_auth_error() {
        let auth = AuthConfig::ClientSecret {
            tenant: "00000000-0000-0000-0000-000000000001".into(),
            client_id: "app".into(),
            secret: Secret::new("s"),
            authority_host: "https://127.0.0.1:1".into(),
        };
        let source = TokenSource::new(auth, reqwest::Client::new()).unwrap();
        let e = source.token().await.unwrap_err();
        assert!(!e.permanent, "a connection error is worth retrying: {e}");
        assert!(!e.message.contains("\"s\""));
        assert!(e.message.contains("https://127.0.0.1:1/"), "the error names the token endpoint: {e}");
    }
}
