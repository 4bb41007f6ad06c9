//! The local Entra-style authority: what azure-identity's `ClientSecretCredential` (through
//! MSAL) needs with `authority=<our authority>` and `disable_instance_discovery=True`:
//! - `GET /{tenant}/v2.0/.well-known/openid-configuration`: MSAL's tenant discovery, read for
//!   `token_endpoint` and `authorization_endpoint` (msal `authority.py`);
//! - `POST /{tenant}/oauth2/v2.0/token`: the client-credentials grant, form-encoded
//!   `grant_type=client_credentials`, `client_id`, `client_secret`, `scope`;
//! - `GET /common/discovery/instance`: the instance-discovery document, for clients that do not
//!   disable it (MSAL sends it to `login.microsoftonline.com` for unknown hosts, so in practice
//!   `disable_instance_discovery=True` is required with a local authority).
//!
//! With [`crate::ServerConfig::client_certificate_pem`] set, the grant may instead carry
//! `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and a
//! `client_assertion` JWT (what `ClientCertificateCredential` sends): RS256 or PS256, signed
//! with the certificate's key, `aud` the token endpoint URL, `iss` = `sub` = the client id, `exp`
//! in the future; anything else is 401 `invalid_client`.
//!
//! Errors follow OAuth2 (RFC 6749 §5.2): `{"error","error_description"}`; a wrong secret is 401
//! `invalid_client`. Issued tokens are random opaque strings remembered with their scope; the
//! ingestion endpoint accepts only those for `https://monitor.azure.com/.default`. Secrets and
//! tokens are never logged.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::ingest::BoxResponseFuture;
use crate::{Resp, Shared};

const MAX_FORM_BYTES: usize = 64 * 1024;

/// The only accepted `client_assertion_type`.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Entry point of the authority listener.
pub(crate) fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> BoxResponseFuture {
    Box::pin(async move { Ok(route(&shared, req).await) })
}

fn json_response(status: u16, body: &Value) -> Resp {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .header("cache-control", "no-store, no-cache")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn oauth_error(status: u16, error: &str, description: &str) -> Resp {
    json_response(status, &json!({ "error": error, "error_description": description }))
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let tenant = &shared.config.tenant;
    match (req.method(), segments.as_slice()) {
        (&Method::POST, [t, "oauth2", "v2.0", "token"]) => {
            if *t != tenant.as_str() {
                return unknown_tenant(t);
            }
            let form = match Limited::new(req.into_body(), MAX_FORM_BYTES).collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => return oauth_error(400, "invalid_request", "the request body is too large"),
            };
            token(shared, &form)
        }
        (&Method::GET, [t, "v2.0", ".well-known", "openid-configuration"]) => {
            if *t != tenant.as_str() {
                return unknown_tenant(t);
            }
            json_response(200, &openid_configuration(&shared.authority, tenant))
        }
        (&Method::GET, ["common", "discovery", "instance"]) => {
            let host = shared.authority.trim_start_matches("https://");
            json_response(
                200,
                &json!({
                    "tenant_discovery_endpoint": format!(
                        "{}/{tenant}/v2.0/.well-known/openid-configuration",
                        shared.authority
                    ),
                    "api-version": "1.1",
                    "metadata": [{
                        "preferred_network": host,
                        "preferred_cache": host,
                        "aliases": [host],
                    }],
                }),
            )
        }
        _ => oauth_error(404, "not_found", "unknown path on the local authority"),
    }
}

fn unknown_tenant(t: &str) -> Resp {
    oauth_error(400, "invalid_tenant", &format!("tenant '{t}' not found on this authority"))
}

/// The OpenID configuration document for `tenant` (the fields Entra publishes that MSAL reads).
fn openid_configuration(authority: &str, tenant: &str) -> Value {
    let base = format!("{authority}/{tenant}");
    json!({
        "issuer": format!("{base}/v2.0"),
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
        "end_session_endpoint": format!("{base}/oauth2/v2.0/logout"),
        "jwks_uri": format!("{authority}/{tenant}/discovery/v2.0/keys"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "tenant_region_scope": "WW",
        "cloud_instance_name": "microsoftonline.com",
    })
}

fn token(shared: &Shared, form: &[u8]) -> Resp {
    let config = &shared.config;
    let fields: HashMap<String, String> =
        url::form_urlencoded::parse(form).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
    if get("grant_type") != "client_credentials" {
        return oauth_error(400, "unsupported_grant_type", "only the client_credentials grant is supported");
    }
    if get("client_id") != config.client_id {
        return oauth_error(400, "unauthorized_client", "the application was not found in the tenant");
    }
    if fields.contains_key("client_assertion") || fields.contains_key("client_assertion_type") {
        let endpoint = format!("{}/{}/oauth2/v2.0/token", shared.authority, config.tenant);
        let checked = match (&config.client_certificate_pem, get("client_assertion_type")) {
            (None, _) => Err("no certificate is registered for the application".to_owned()),
            (Some(_), t) if t != JWT_BEARER => Err(format!("client_assertion_type must be {JWT_BEARER}")),
            (Some(pem), _) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                verify_assertion(get("client_assertion"), pem, &config.client_id, &endpoint, now)
            }
        };
        if let Err(why) = checked {
            return oauth_error(401, "invalid_client", &format!("invalid client assertion: {why}"));
        }
    } else if get("client_secret") != config.client_secret {
        return oauth_error(401, "invalid_client", "invalid client secret provided");
    }
    let scope = get("scope");
    let scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    if scopes.is_empty() || !scopes.iter().all(|s| s.ends_with("/.default")) {
        return oauth_error(
            400,
            "invalid_scope",
            "the client_credentials grant needs a single '<resource>/.default' scope",
        );
    }
    let access_token = random_token();
    shared.issue_token(access_token.clone(), scopes.join(" "));
    let lifetime = config.token_lifetime.as_secs();
    json_response(
        200,
        &json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }),
    )
}

/// Checks a `client_assertion` JWT: signature (RS256 or PS256) by the key of the certificate in
/// `certificate_pem`, `aud` = `endpoint`, `iss` = `sub` = `client_id`, `exp` after `now` and
/// `nbf` (when present) not after it (unix seconds, 5 minutes of clock skew allowed for `nbf`).
pub fn verify_assertion(
    jwt: &str,
    certificate_pem: &str,
    client_id: &str,
    endpoint: &str,
    now: i64,
) -> Result<(), String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else {
        return Err("not a signed JWT".into());
    };
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).map_err(|_| format!("the {what} is not base64url"))
    };
    let json = |bytes: Vec<u8>, what: &str| {
        serde_json::from_slice::<Value>(&bytes).map_err(|_| format!("the {what} is not a JSON object"))
    };
    let header = json(decode(header, "header")?, "header")?;
    let claims = json(decode(payload, "payload")?, "payload")?;
    let signature = decode(signature, "signature")?;
    let algorithm = match header["alg"].as_str() {
        Some("RS256") => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        Some("PS256") => webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        other => return Err(format!("unsupported alg {other:?} (RS256 or PS256)")),
    };
    let der = CertificateDer::from_pem_slice(certificate_pem.as_bytes())
        .map_err(|e| format!("the registered certificate is not PEM: {e}"))?;
    let cert =
        webpki::EndEntityCert::try_from(&der).map_err(|e| format!("the registered certificate does not parse: {e}"))?;
    let signed = &jwt[..jwt.rfind('.').unwrap_or(0)];
    cert.verify_signature(algorithm, signed.as_bytes(), &signature)
        .map_err(|_| "the signature does not match the registered certificate".to_owned())?;
    if claims["aud"].as_str() != Some(endpoint) {
        return Err(format!("aud must be {endpoint}"));
    }
    if claims["iss"].as_str() != Some(client_id) || claims["sub"].as_str() != Some(client_id) {
        return Err("iss and sub must be the client id".into());
    }
    match claims["exp"].as_i64() {
        Some(exp) if exp > now => {}
        Some(_) => return Err("the assertion has expired".into()),
        None => return Err("exp is missing".into()),
    }
    if let Some(nbf) = claims.get("nbf") {
        match nbf.as_i64() {
            Some(nbf) if nbf <= now + 300 => {}
            _ => return Err("the assertion is not valid yet".into()),
        }
    }
    Ok(())
}

fn random_token() -> String {
    let (a, b): (u128, u128) = (rand::random(), rand::random());
    format!("{a:032x}{b:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openid_configuration_points_at_our_token_endpoint() {
        let doc = openid_configuration("https://127.0.0.1:1234", "t1");
        assert_eq!(doc["token_endpoint"], "https://127.0.0.1:1234/t1/oauth2/v2.0/token");
        assert_eq!(doc["authorization_endpoint"], "https://127.0.0.1:1234/t1/oauth2/v2.0/authorize");
    }

    #[test]
    fn tokens_are_random() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
