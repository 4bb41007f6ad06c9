use std::sync::Arc;

use super::*;

fn config() -> KafkaConfig {
    KafkaConfig::new("ns.servicebus.windows.net:9093", vec!["defender".into()], "defender-ingest")
}

#[test]
fn event_hubs_defaults_are_set_and_auto_commit_is_off() {
    let c = config().client_config();
    for (key, want) in [
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("metadata.max.age.ms", "180000"),
        ("connections.max.idle.ms", "180000"),
        ("socket.keepalive.enable", "true"),
        ("session.timeout.ms", "30000"),
        ("auto.offset.reset", "earliest"),
        ("security.protocol", "plaintext"),
    ] {
        assert_eq!(c.get(key), Some(want), "{key}");
    }
    assert_eq!(c.get("group.instance.id"), None);
}

#[test]
fn connection_string_auth_is_sasl_plain_and_never_shown() {
    let secret = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=s3cr3t";
    let mut cfg = config();
    cfg.auth = KafkaAuth::ConnectionString(secret.into());
    cfg.group_instance_id = Some("pod-0".into());
    let c = cfg.client_config();
    assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
    assert_eq!(c.get("sasl.mechanism"), Some("PLAIN"));
    assert_eq!(c.get("sasl.username"), Some("$ConnectionString"));
    assert_eq!(c.get("sasl.password"), Some(secret));
    assert_eq!(c.get("group.instance.id"), Some("pod-0"));
    let shown = format!("{cfg:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(shown.contains("ConnectionString(***)"), "{shown}");
    // librdkafka accepts the whole Event Hubs configuration (TLS included).
    cfg.check().expect("a consumer can be created");
}

struct Fixed;
impl TokenProvider for Fixed {
    fn token(&self) -> Result<(String, i64), String> {
        Ok(("t".into(), 0))
    }
}

#[test]
fn oauth_is_sasl_oauthbearer() {
    let mut cfg = config();
    cfg.auth = KafkaAuth::OAuth(Arc::new(Fixed));
    let c = cfg.client_config();
    assert_eq!(c.get("sasl.mechanism"), Some("OAUTHBEARER"));
    assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
    cfg.check().expect("a consumer can be created");
}

#[test]
fn a_wrong_property_is_a_config_error_that_names_it() {
    let mut cfg = config();
    cfg.properties.insert("fetch.wait.max.ms".into(), "soon".into());
    let err = cfg.check().unwrap_err().to_string();
    assert!(err.contains("fetch.wait.max.ms"), "{err}");
    let mut cfg = config();
    cfg.topics.clear();
    assert!(cfg.check().unwrap_err().to_string().contains("no topic"));
}

#[test]
fn start_position_latest_maps_to_offset_reset() {
    let mut cfg = config();
    cfg.start = StartPosition::Latest;
    assert_eq!(cfg.client_config().get("auto.offset.reset"), Some("latest"));
    cfg.start = StartPosition::Timestamp(1_700_000_000_000);
    assert_eq!(cfg.client_config().get("auto.offset.reset"), Some("earliest"));
}
