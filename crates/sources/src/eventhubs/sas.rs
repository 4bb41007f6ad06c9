//! Shared access signatures minted from a connection string's key.
//!
//! The Rust SDK authorizes every AMQP link with claims-based security: it asks its
//! [`TokenCredential`] for a token (scope `https://eventhubs.azure.net/.default`) and sends it
//! in a `put-token` to `$cbs`, with `type = "jwt"` whatever the token is
//! (`azure_core_amqp` 1.1 `fe2o3/cbs.rs`: `token_type.unwrap_or("jwt")`; the Event Hubs
//! authorizer passes `None`). Event Hubs accepts a SAS token there too: it recognises the
//! `SharedAccessSignature ` prefix. So a connection string becomes a [`SasCredential`] that signs
//! tokens itself, in the format of "Authorize access with a shared access signature"
//! (learn.microsoft.com/azure/event-hubs/authenticate-shared-access-signature):
//! `SharedAccessSignature sr=<url-encoded resource>&sig=<url-encoded base64 HMAC-SHA256 of
//! "<url-encoded resource>\n<expiry>">&se=<expiry>&skn=<key name>`.
//!
//! Nothing here logs or displays the key or a token: [`ConnectionString`]'s and
//! [`SasCredential`]'s `Debug` show the key name only.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What URL encoding leaves alone in the SDKs' SAS code (.NET `WebUtility.UrlEncode`, Python
/// `quote_plus`): letters, digits and `-._~`.
const URL: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// How long a minted token is valid; the SDK refreshes it before it expires.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The parts of an Event Hubs connection string we use
/// (`Endpoint=sb://<fqdn>/;SharedAccessKeyName=..;SharedAccessKey=..[;EntityPath=..]`).
#[derive(Clone)]
pub struct ConnectionString {
    /// The endpoint's host (and port), e.g. `contoso.servicebus.windows.net`.
    pub endpoint_host: String,
    pub key_name: String,
    key: String,
    pub entity_path: Option<String>,
    /// `UseDevelopmentEmulator=true`: the endpoint speaks plain AMQP (the emulator, tests).
    pub development_emulator: bool,
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("endpoint_host", &self.endpoint_host)
            .field("key_name", &self.key_name)
            .field("key", &"***")
            .field("entity_path", &self.entity_path)
            .finish()
    }
}

impl ConnectionString {
    /// Parses a connection string. Errors name the missing part, never quote the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (mut endpoint, mut key_name, mut key, mut entity, mut emulator) = (None, None, None, None, false);
        for part in text.trim().split(';').filter(|p| !p.trim().is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err("a part of the connection string is not key=value".into());
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(v.trim().to_string()),
                "sharedaccesskeyname" => key_name = Some(v.trim().to_string()),
                "sharedaccesskey" => key = Some(v.trim().to_string()),
                "entitypath" => entity = Some(v.trim().to_string()),
                "usedevelopmentemulator" => emulator = v.trim().eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        let endpoint = endpoint.ok_or("the connection string has no Endpoint")?;
        let host =
            endpoint.split_once("://").map_or(endpoint.as_str(), |(_, rest)| rest).trim_end_matches('/').to_string();
        if host.is_empty() {
            return Err("the connection string's Endpoint has no host".into());
        }
        Ok(Self {
            endpoint_host: host,
            key_name: key_name.filter(|k| !k.is_empty()).ok_or("the connection string has no SharedAccessKeyName")?,
            key: key.filter(|k| !k.is_empty()).ok_or("the connection string has no SharedAccessKey")?,
            entity_path: entity.filter(|e| !e.is_empty()),
            development_emulator: emulator,
        })
    }
}

/// A [`TokenCredential`] that signs SAS tokens for one resource with a connection string's key.
#[derive(Clone)]
pub struct SasCredential {
    resource: String,
    key_name: String,
    key: String,
}

impl fmt::Debug for SasCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasCredential").field("resource", &self.resource).field("key_name", &self.key_name).finish()
    }
}

impl SasCredential {
    /// Tokens for `sb://<namespace fqdn>/<event hub>` (every partition and consumer group of
    /// the hub: a SAS token is valid for the resource and everything under it).
    pub fn new(connection: &ConnectionString, namespace: &str, event_hub: &str) -> Self {
        Self {
            resource: format!("sb://{}/{}", namespace.to_ascii_lowercase(), event_hub),
            key_name: connection.key_name.clone(),
            key: connection.key.clone(),
        }
    }

    /// A token valid until `expiry` (Unix seconds).
    pub fn token_at(&self, expiry: u64) -> String {
        let sr = utf8_percent_encode(&self.resource, URL).to_string();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.key.as_bytes());
        let sig = ring::hmac::sign(&key, format!("{sr}\n{expiry}").as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(sig.as_ref());
        let sig = utf8_percent_encode(&sig, URL);
        let skn = utf8_percent_encode(&self.key_name, URL);
        format!("SharedAccessSignature sr={sr}&sig={sig}&se={expiry}&skn={skn}")
    }
}

#[async_trait::async_trait]
impl TokenCredential for SasCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let expiry = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + TOKEN_LIFETIME;
        let expires_on = azure_core::time::OffsetDateTime::from_unix_timestamp(expiry.as_secs() as i64)
            .unwrap_or(azure_core::time::OffsetDateTime::now_utc());
        Ok(AccessToken::new(Secret::new(self.token_at(expiry.as_secs())), expires_on))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CS: &str = "Endpoint=sb://Contoso.servicebus.windows.net/;SharedAccessKeyName=listen;\
                      SharedAccessKey=c2VjcmV0a2V5;EntityPath=defender";

    #[test]
    fn parses_a_connection_string_without_showing_the_key() {
        let c = ConnectionString::parse(CS).unwrap();
        assert_eq!(c.endpoint_host, "Contoso.servicebus.windows.net");
        assert_eq!(c.key_name, "listen");
        assert_eq!(c.entity_path.as_deref(), Some("defender"));
        assert!(!c.development_emulator);
        assert!(!format!("{c:?}").contains("c2VjcmV0a2V5"));
        let e = ConnectionString::parse("Endpoint=sb://x/;SharedAccessKeyName=k").unwrap_err();
        assert!(e.contains("SharedAccessKey"), "{e}");
        let emu = ConnectionString::parse(&format!("{CS};UseDevelopmentEmulator=true")).unwrap();
        assert!(emu.development_emulator);
    }

    /// The signature of the documented algorithm, computed independently: HMAC-SHA256 over
    /// "<encoded uri>\n<expiry>" with the key's UTF-8 bytes, base64, URL-encoded.
    #[test]
    fn signs_the_documented_string() {
        let c = ConnectionString::parse(CS).unwrap();
        let cred = SasCredential::new(&c, "Contoso.servicebus.windows.net", "defender");
        let t = cred.token_at(1_700_000_000);
        assert!(t.starts_with("SharedAccessSignature sr=sb%3A%2F%2Fcontoso.servicebus.windows.net%2Fdefender&sig="));
        assert!(t.ends_with("&se=1700000000&skn=listen"), "{t}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"c2VjcmV0a2V5");
        let expected = ring::hmac::sign(&key, b"sb%3A%2F%2Fcontoso.servicebus.windows.net%2Fdefender\n1700000000");
        let sig = base64::engine::general_purpose::STANDARD.encode(expected.as_ref());
        let sig = utf8_percent_encode(&sig, URL).to_string();
        assert!(t.contains(&format!("&sig={sig}&")), "{t}");
        assert!(!format!("{cred:?}").contains("c2VjcmV0a2V5"));
    }
}
