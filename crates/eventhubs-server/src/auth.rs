//! Claims-based security: which tokens authorize which entities, and entity addresses.
//!
//! What the clients send on `$cbs` (`put-token`, application properties `operation`, `type`,
//! `name`, `expiration`; the token is the body, an AMQP string):
//! - Rust `azure_core_amqp` 1.1 (`fe2o3/cbs.rs`, `authorize_path`): `type` is whatever the caller
//!   passes and `azure_messaging_eventhubs` 0.15 passes none (`common/authorizer.rs`,
//!   `perform_authorization`), so it is always `jwt`, whatever the credential's token is (a
//!   `TokenCredential` may well return a SAS token); `name` is the link URL
//!   (`amqps://<fqdn>/<hub>[/ConsumerGroups/<cg>]/Partitions/<n>`, or the hub's).
//! - Python `azure-eventhub` 5.15 with a connection string (`_client_base.py`,
//!   `EventHubSharedKeyCredential`): `type` `servicebus.windows.net:sastoken`, `name` and the
//!   token's `sr` `sb://<host><path>` where the host is the connection string's without its port
//!   (`127.0.0.1` for the emulator form).
//!
//! So a token of the SAS form is verified whatever `type` says, as the service does: HMAC-SHA256
//! with the configured key over `<sr as in the token, URL-encoded>\n<se>`, base64 (`sig`), the key
//! name (`skn`), the expiry (`se`, seconds since the epoch) and that `sr` covers `name`. Other
//! tokens (Entra JWTs) are accepted only when the server was started with `--accept-jwt`: the
//! local token endpoint's tokens are opaque and cannot be verified from another process.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How a put-token was refused: the status code and description of the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub description: String,
}

fn refused(status: u16, description: impl Into<String>) -> Refused {
    Refused { status, description: description.into() }
}

/// What the server checks tokens and addresses against.
#[derive(Debug, Clone)]
pub struct Authority {
    /// The namespace's host name, e.g. `defender-test.servicebus.windows.net`.
    pub namespace: String,
    pub key_name: String,
    pub key: String,
    pub accept_jwt: bool,
}

impl Authority {
    /// The entity path of an address (`amqps://<host>/<path>`, `sb://<host>/<path>` or a bare
    /// `<path>`), without slashes around it. A host other than the namespace or this machine's
    /// loopback (which the Python SDK's emulator mode uses) is refused.
    pub fn entity_path(&self, address: &str) -> Result<String, String> {
        if !address.contains("://") {
            return Ok(address.trim_matches('/').to_string());
        }
        let url = url::Url::parse(address).map_err(|e| format!("invalid address {address}: {e}"))?;
        let host = url.host_str().unwrap_or_default();
        let local = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
        if !local && !host.eq_ignore_ascii_case(&self.namespace) {
            return Err(format!("the address {address} is not in the namespace {}", self.namespace));
        }
        let path = percent_decode(url.path());
        Ok(path.trim_matches('/').to_string())
    }

    /// Checks a put-token; on success, the entity path it authorizes and its expiry (ms).
    pub fn put_token(
        &self,
        name: &str,
        token_type: &str,
        token: &str,
        expiration_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<(String, i64), Refused> {
        let path = self.entity_path(name).map_err(|e| refused(404, e))?;
        if let Some(sas) = token.strip_prefix("SharedAccessSignature ") {
            let (audience, expiry_s) = self.verify_sas(sas, now_ms)?;
            if !covers(&audience, &path) {
                return Err(refused(401, format!("InvalidAudience: the token's audience does not cover {name}")));
            }
            return Ok((path, expiry_s.saturating_mul(1000)));
        }
        match token_type {
            "jwt" if self.accept_jwt => Ok((path, expiration_ms.unwrap_or(now_ms + 3_600_000))),
            "jwt" => {
                Err(refused(401, "InvalidToken: JWTs are not accepted by this server (start it with --accept-jwt)"))
            }
            other => Err(refused(401, format!("InvalidToken: the token is not a valid token of type {other}"))),
        }
    }

    /// Verifies a SAS token (after `SharedAccessSignature `); its audience path and expiry (s).
    fn verify_sas(&self, sas: &str, now_ms: i64) -> Result<(String, i64), Refused> {
        let mut sr_raw = None;
        let (mut sig, mut se, mut skn) = (None, None, None);
        for pair in sas.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "sr" => sr_raw = Some(v),
                "sig" => sig = Some(percent_decode(v)),
                "se" => se = Some(v),
                "skn" => skn = Some(percent_decode(v)),
                _ => {}
            }
        }
        let malformed = || refused(401, "InvalidToken: malformed SharedAccessSignature");
        let (sr_raw, sig, se, skn) = match (sr_raw, sig, se, skn) {
            (Some(a), Some(b), Some(c), Some(d)) => (a, b, c, d),
            _ => return Err(malformed()),
        };
        if skn != self.key_name {
            return Err(refused(401, "InvalidIssuer: the token's key name is not a key of this namespace"));
        }
        let expiry_s: i64 = se.parse().map_err(|_| malformed())?;
        let audience_url = percent_decode(sr_raw);
        // The string to sign carries the audience URL-encoded; generators differ in how (upper
        // or lower case escapes), so the token's own encoding and a canonical one are tried.
        let candidates = [sr_raw.to_string(), url_encode(&audience_url)];
        let expected = base64::engine::general_purpose::STANDARD.decode(sig.as_bytes()).map_err(|_| malformed())?;
        let ok = candidates.iter().any(|sr| {
            let mut mac = Hmac::<Sha256>::new_from_slice(self.key.as_bytes()).expect("hmac accepts any key length");
            mac.update(format!("{sr}\n{se}").as_bytes());
            mac.verify_slice(&expected).is_ok()
        });
        if !ok {
            return Err(refused(401, "InvalidSignature: the token has an invalid signature"));
        }
        if expiry_s.saturating_mul(1000) <= now_ms {
            return Err(refused(401, format!("ExpiredToken: the token expired at {expiry_s}")));
        }
        let audience = self.entity_path(&audience_url).map_err(|e| refused(401, format!("InvalidAudience: {e}")))?;
        Ok((audience, expiry_s))
    }
}

/// Whether a grant for `granted` (an entity path) covers `path`: equal or a parent, segment-wise
/// and case-insensitively; the empty path (the namespace) covers everything.
pub fn covers(granted: &str, path: &str) -> bool {
    let g: Vec<String> = granted.split('/').filter(|s| !s.is_empty()).map(str::to_lowercase).collect();
    let p: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(str::to_lowercase).collect();
    g.len() <= p.len() && g.iter().zip(&p).all(|(a, b)| a == b)
}

/// Decodes `%XX` escapes (a `+` stays a `+`: base64 signatures contain it unescaped in some
/// generators' tokens, and no SAS field holds a space).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// `quote_plus`-style encoding (what the Python SDK and most SAS generators use).
pub fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A SAS token for `resource` (a URL such as `sb://<fqdn>/<hub>`), valid until `expiry_s`.
pub fn sas_token(resource: &str, key_name: &str, key: &str, expiry_s: i64) -> String {
    let sr = url_encode(resource);
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("hmac accepts any key length");
    mac.update(format!("{sr}\n{expiry_s}").as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!("SharedAccessSignature sr={sr}&sig={}&se={expiry_s}&skn={}", url_encode(&sig), url_encode(key_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority() -> Authority {
        Authority {
            namespace: "ns.servicebus.windows.net".into(),
            key_name: "policy".into(),
            key: "c2VjcmV0".into(),
            accept_jwt: false,
        }
    }

    #[test]
    fn verifies_sas_tokens_whatever_the_type_says() {
        let a = authority();
        let now = 1_000_000_000;
        let token = sas_token("sb://ns.servicebus.windows.net/hub", "policy", "c2VjcmV0", 2_000_000);
        let name = "amqps://ns.servicebus.windows.net/hub/ConsumerGroups/$Default/Partitions/0";
        assert_eq!(
            a.put_token(name, "jwt", &token, None, now),
            Ok(("hub/ConsumerGroups/$Default/Partitions/0".into(), 2_000_000_000))
        );
        assert!(a.put_token(name, "servicebus.windows.net:sastoken", &token, None, now).is_ok());
        // The loopback host of the Python SDK's emulator mode.
        let local = sas_token("sb://127.0.0.1/hub", "policy", "c2VjcmV0", 2_000_000);
        assert!(a.put_token("sb://127.0.0.1/hub", "servicebus.windows.net:sastoken", &local, None, now).is_ok());

        let wrong_key = sas_token("sb://ns.servicebus.windows.net/hub", "policy", "other", 2_000_000);
        assert_eq!(a.put_token(name, "jwt", &wrong_key, None, now).unwrap_err().status, 401);
        let wrong_name = sas_token("sb://ns.servicebus.windows.net/hub", "other", "c2VjcmV0", 2_000_000);
        assert_eq!(a.put_token(name, "jwt", &wrong_name, None, now).unwrap_err().status, 401);
        let expired = sas_token("sb://ns.servicebus.windows.net/hub", "policy", "c2VjcmV0", 999_999);
        assert!(a.put_token(name, "jwt", &expired, None, now).unwrap_err().description.starts_with("ExpiredToken"));
        let other_hub = sas_token("sb://ns.servicebus.windows.net/other", "policy", "c2VjcmV0", 2_000_000);
        assert_eq!(a.put_token(name, "jwt", &other_hub, None, now).unwrap_err().status, 401);
        let other_ns = sas_token("sb://elsewhere.servicebus.windows.net/hub", "policy", "c2VjcmV0", 2_000_000);
        assert_eq!(a.put_token(name, "jwt", &other_ns, None, now).unwrap_err().status, 401);
        // Opaque tokens only with --accept-jwt.
        assert_eq!(a.put_token(name, "jwt", "eyJ.opaque", None, now).unwrap_err().status, 401);
        let jwt = Authority { accept_jwt: true, ..a };
        assert!(jwt.put_token(name, "jwt", "eyJ.opaque", Some(now + 5), now).is_ok());
    }

    #[test]
    fn covers_by_segments() {
        assert!(covers("hub", "hub/ConsumerGroups/$Default/Partitions/0"));
        assert!(covers("HUB", "hub"));
        assert!(covers("", "hub"));
        assert!(!covers("hub", "hub2"));
        assert!(!covers("hub/Partitions/1", "hub/Partitions/0"));
    }
}
