//! Unit tests of what needs no endpoint: the start position the SDK gets and the checks.

use std::sync::Arc;

use azure_core::http::Url;
use azure_messaging_eventhubs::StartLocation;

use super::*;
use crate::StartPosition;

fn config() -> EventHubsConfig {
    let cs =
        ConnectionString::parse("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s")
            .unwrap();
    EventHubsConfig::new(
        "ns.servicebus.windows.net",
        "defender",
        Arc::new(SasCredential::new(&cs, "ns.servicebus.windows.net", "defender")),
        Url::parse("https://acct.blob.core.windows.net/checkpoints").unwrap(),
        BlobAuth::Sas("sv=2024&sig=topsecret".into()),
    )
}

#[test]
fn start_positions_are_exclusive_so_checkpoints_resume_after_the_last_event() {
    let mut c = config();
    assert_eq!(c.sdk_start().location, StartLocation::Earliest);
    assert!(!c.sdk_start().inclusive);
    c.start = StartPosition::Latest;
    assert_eq!(c.sdk_start().location, StartLocation::Latest);
    c.start = StartPosition::Timestamp(1_700_000_000_000);
    assert_eq!(
        c.sdk_start().location,
        StartLocation::EnqueuedTime(std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000))
    );
}

#[test]
fn checks_refuse_an_expiration_within_the_balancing_interval_and_hide_the_sas() {
    let mut c = config();
    c.check().unwrap();
    c.partition_expiration = c.load_balancing_interval;
    assert!(c.check().unwrap_err().to_string().contains("longer than the load-balancing interval"));
    let shown = format!("{c:?}");
    assert!(!shown.contains("topsecret") && !shown.contains("SharedAccessKey=s"), "{shown}");
}
