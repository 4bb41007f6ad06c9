//! Client certificate auth on the local token endpoint: a `client_assertion` JWT signed with the
//! registered certificate's key gets a token; a wrong key, audience, issuer, algorithm or an
//! expired assertion is 401 `invalid_client`.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{CLIENT_ID, TENANT, post_token_form};
use defender_ingestion_server::TestServer;
use defender_ingestion_server::token::{JWT_BEARER, verify_assertion};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::{RsaPssSaltlen, Signer};
use serde_json::{Value, json};

/// An RSA key (ring cannot generate one) and a self-signed certificate for it made by rcgen.
fn key_and_certificate() -> (PKey<Private>, String) {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let pem = String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let key_pair = rcgen::KeyPair::from_pem(&pem).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["app".to_owned()]).unwrap().self_signed(&key_pair).unwrap();
    (key, cert.pem())
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A JWT with `claims`, signed with `key` by `alg` (RS256 or PS256; anything else is unsigned).
fn jwt(key: &PKey<Private>, alg: &str, claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({ "alg": alg, "typ": "JWT" }).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let mut signer = Signer::new(MessageDigest::sha256(), key).unwrap();
    if alg == "PS256" {
        signer.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
        signer.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH).unwrap();
    }
    let signature = if alg.ends_with("256") { signer.sign_oneshot_to_vec(signed.as_bytes()).unwrap() } else { vec![] };
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn claims(endpoint: &str) -> Value {
    json!({ "aud": endpoint, "iss": CLIENT_ID, "sub": CLIENT_ID, "exp": now() + 300, "nbf": now(), "jti": "1" })
}

async fn start(certificate_pem: Option<String>) -> TestServer {
    let mut config = common::config();
    config.client_certificate_pem = certificate_pem;
    TestServer::start(config).await.unwrap()
}

fn endpoint(server: &TestServer) -> String {
    format!("{}/{TENANT}/oauth2/v2.0/token", server.authority)
}

async fn ask(server: &TestServer, assertion_type: &str, assertion: &str) -> common::Reply {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("scope", "https://monitor.azure.com/.default")
        .append_pair("client_assertion_type", assertion_type)
        .append_pair("client_assertion", assertion)
        .finish();
    post_token_form(&server.authority, &server.ca_pem, form).await
}

fn assert_invalid_client(reply: &common::Reply, why: &str) {
    assert_eq!(reply.status, 401, "{}", String::from_utf8_lossy(&reply.body));
    let body = reply.json();
    assert_eq!(body["error"], "invalid_client");
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains(why), "{description}");
}

#[tokio::test]
async fn a_good_assertion_gets_a_token_that_the_endpoint_accepts() {
    let (key, cert) = key_and_certificate();
    let server = start(Some(cert)).await;
    for alg in ["RS256", "PS256"] {
        let reply = ask(&server, JWT_BEARER, &jwt(&key, alg, &claims(&endpoint(&server)))).await;
        assert_eq!(reply.status, 200, "{alg}: {}", String::from_utf8_lossy(&reply.body));
        let token = reply.json()["access_token"].as_str().unwrap().to_owned();
        let posted = common::post(&server, &token, common::rows(2).to_string().into_bytes(), false).await.unwrap();
        assert_eq!(posted.status, 204);
    }
}

#[tokio::test]
async fn bad_assertions_are_401_invalid_client() {
    let (key, cert) = key_and_certificate();
    let (other_key, _) = key_and_certificate();
    let server = start(Some(cert)).await;
    let good = claims(&endpoint(&server));
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let cases = [
        (jwt(&other_key, "RS256", &good), "signature does not match"),
        (
            jwt(&key, "RS256", &with("aud", json!("https://login.microsoftonline.com/t/oauth2/v2.0/token"))),
            "aud must be",
        ),
        (jwt(&key, "RS256", &with("iss", json!("someone-else"))), "iss and sub"),
        (jwt(&key, "RS256", &with("sub", json!("someone-else"))), "iss and sub"),
        (jwt(&key, "RS256", &with("exp", json!(now() - 1))), "expired"),
        (jwt(&key, "RS256", &with("nbf", json!(now() + 3600))), "not valid yet"),
        (jwt(&key, "none", &good), "unsupported alg"),
        ("not-a-jwt".to_owned(), "not a signed JWT"),
    ];
    for (assertion, why) in &cases {
        assert_invalid_client(&ask(&server, JWT_BEARER, assertion).await, why);
    }
    // A payload swapped after signing.
    let signed = jwt(&key, "RS256", &good);
    let forged = URL_SAFE_NO_PAD.encode(with("sub", json!("admin")).to_string());
    let parts: Vec<&str> = signed.split('.').collect();
    let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
    assert_invalid_client(&ask(&server, JWT_BEARER, &tampered).await, "signature does not match");
    // The right assertion with the wrong assertion type.
    assert_invalid_client(&ask(&server, "urn:other", &signed).await, "client_assertion_type must be");
}

#[tokio::test]
async fn without_a_registered_certificate_assertions_are_refused() {
    let (key, _) = key_and_certificate();
    let server = start(None).await;
    let reply = ask(&server, JWT_BEARER, &jwt(&key, "RS256", &claims(&endpoint(&server)))).await;
    assert_invalid_client(&reply, "no certificate is registered");
}

#[test]
fn verify_assertion_checks_the_clock_it_is_given() {
    let (key, cert) = key_and_certificate();
    let aud = "https://127.0.0.1:1/t/oauth2/v2.0/token";
    let token = jwt(&key, "RS256", &json!({ "aud": aud, "iss": "c", "sub": "c", "exp": 1_000 }));
    assert_eq!(verify_assertion(&token, &cert, "c", aud, 999), Ok(()));
    assert!(verify_assertion(&token, &cert, "c", aud, 1_000).unwrap_err().contains("expired"));
    let no_exp = jwt(&key, "RS256", &json!({ "aud": aud, "iss": "c", "sub": "c" }));
    assert!(verify_assertion(&no_exp, &cert, "c", aud, 0).unwrap_err().contains("exp is missing"));
    assert!(verify_assertion(&token, "not pem", "c", aud, 0).unwrap_err().contains("not PEM"));
}
