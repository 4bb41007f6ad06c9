//! The config's checks and messages, and its defaults against the libraries'.

use defender_core::{
    Catalog,
    billing::{Prices, Tier},
};
use defender_sinks::sentinel::{AuthConfig, SentinelConfig};

use crate::{Config, SentinelTarget};

#[test]
fn the_example_config_is_valid() {
    let text = include_str!("../../../examples/local.toml");
    let c = Config::parse(text).unwrap();
    assert!(c.source.files.is_some());
    assert!(c.archive.is_some());
}

#[test]
fn the_event_hubs_example_is_valid_and_takes_the_connection_string_from_the_environment() {
    let text = include_str!("../../../examples/eventhubs.toml");
    let c = Config::parse(text).unwrap();
    let k = c.source.kafka.as_ref().unwrap();
    assert_eq!(k.bootstrap, "my-namespace.servicebus.windows.net:9093");
    assert_eq!(k.connection_string_env.as_deref(), Some("EVENTHUB_CONNECTION_STRING"));
    assert_eq!(k.start_position().unwrap(), defender_sources::StartPosition::Earliest);
    assert_eq!(c.service.listen.as_deref(), Some("0.0.0.0:9464"));
    let s = c.sentinel.as_ref().unwrap();
    let (dcr, d) = s.dcrs.iter().next().unwrap();
    assert_eq!(dcr.get_ref(), "dcr-0123456789abcdef0123456789abcdef");
    assert!(d.endpoint.as_ref().unwrap().get_ref().starts_with("https://defender-ingest-1-"));
    let tables: Vec<&str> = d.tables.iter().map(|t| t.get_ref().as_str()).collect();
    assert_eq!(tables, ["DeviceNetworkEvents", "DeviceProcessEvents"]);
}

#[test]
fn kafka_mistakes_say_what_was_expected() {
    let base = "[source.kafka]\nbootstrap = \"b:9093\"\ntopics = [\"t\"]\n";
    let err = |extra: &str| Config::parse(&format!("{base}{extra}")).unwrap_err().to_string();
    assert!(err("").contains("exactly one of `connection_string_env`"), "{}", err(""));
    assert!(err("plaintext = true\nconnection_string_env = \"X\"\n").contains("exactly one"));
    let e = err("plaintext = true\nstart = \"yesterday\"\n");
    assert!(e.contains("`source.kafka.start` is \"yesterday\"") && e.contains("RFC 3339"), "{e}");
    let e = err("plaintext = true\n[source.kafka.properties]\n\"sasl.password\" = \"x\"\n");
    assert!(e.contains("credentials do not go in the file"), "{e}");
    let e = err("plaintext = true\ncommit_interval = 5\n");
    assert!(e.contains("line 5") && e.contains("unknown field `commit_interval`"), "{e}");
    let ok = Config::parse(&format!("{base}plaintext = true\nstart = \"2026-11-01T00:00:00Z\"\n")).unwrap();
    assert_eq!(
        ok.source.kafka.unwrap().start_position().unwrap(),
        defender_sources::StartPosition::Timestamp(1_793_491_200_000)
    );
}

#[test]
fn an_unknown_key_names_its_line_and_the_expected_keys() {
    let err = Config::parse("[archive]\nurl = \"x\"\nroll_size = 3\n").unwrap_err().to_string();
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("unknown field `roll_size`, expected one of `url`, `roll_size_mb`"), "{err}");
}

#[test]
fn a_secret_in_the_file_by_mistake_is_not_quoted_back() {
    let secret = "SharedAccessKey=Zm9vYmFyc2VjcmV0";
    // Under a key that does not exist: the error names the key and the line, not the value.
    let text = format!(
        "[sentinel]\nendpoint = \"https://dce.example\"\n[sentinel.auth]\nmethod = \"client_secret\"\n\
         tenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"{secret}\"\n"
    );
    let err = Config::parse(&text).unwrap_err().to_string();
    // (A tagged section's mistakes point at its header.)
    assert!(err.starts_with("line 3, column 1: unknown field `client_secret`"), "{err}");
    assert!(!err.contains("Zm9vYmFy"), "{err}");
    // In place of the name of the variable that holds it.
    let base = "[source.kafka]\nbootstrap = \"b:9093\"\ntopics = [\"t\"]\n";
    let err = Config::parse(&format!("{base}connection_string_env = \"Endpoint=sb://x/;{secret}\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("`source.kafka.connection_string_env` must be the name of an environment variable"),
        "{err}"
    );
    assert!(!err.contains("Zm9vYmFy") && !err.contains("Endpoint"), "{err}");
    let err = Config::parse(&text.replace("client_secret =", "client_secret_env =")).unwrap_err().to_string();
    assert!(err.starts_with("`sentinel.auth.client_secret_env` must be the name of an environment variable"), "{err}");
    assert!(!err.contains("Zm9vYmFy"), "{err}");
    Config::parse(&format!("{base}connection_string_env = \"EVENTHUB_CONNECTION_STRING\"\n")).unwrap();
}

#[test]
fn a_wrong_type_names_its_line_and_the_expected_type() {
    let err = Config::parse("[pipeline]\nflush_rows = \"many\"\n").unwrap_err().to_string();
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("invalid type: string \"many\", expected usize"), "{err}");
}

#[test]
fn a_filter_mistake_points_at_its_line_in_the_config() {
    let text = "[tables.DeviceNetworkEvents]\nsentinel = true\nsentinel_filter = '''\nwhere RemotePort > 80\n| project-away Nope\n'''\n";
    let err = Config::parse(text).unwrap_err().to_string();
    assert!(err.starts_with("tables.DeviceNetworkEvents.sentinel_filter at line 5, column 16:"), "{err}");
    let text = "[tables.DeviceNetworkEvents]\nsentinel_filter = \"where RemotePort == \\\"x\\\"\"\n";
    let err = Config::parse(text).unwrap_err().to_string();
    assert!(err.starts_with("tables.DeviceNetworkEvents.sentinel_filter at line 2, column"), "{err}");
}

#[test]
fn a_tvm_table_asked_to_go_to_sentinel_is_rejected_with_the_reason() {
    let err = Config::parse("[tables.DeviceTvmSoftwareInventory]\nsentinel = true\n").unwrap_err().to_string();
    assert!(err.starts_with("tables.DeviceTvmSoftwareInventory.sentinel: DeviceTvmSoftwareInventory is a Defender Vulnerability Management (TVM) table"), "{err}");
}

#[test]
fn group_by_is_checked_against_the_table_and_can_turn_grouping_off() {
    let c =
        Config::parse("[tables.EmailEvents]\ngroup_by = \"DeliveryAction\"\n[tables.DeviceEvents]\ngroup_by = \"\"\n")
            .unwrap();
    let g = c.group_by();
    assert_eq!(g["EmailEvents"].as_deref(), Some("DeliveryAction"));
    assert_eq!(g["DeviceEvents"], None);
    let err = Config::parse("[tables.EmailEvents]\ngroup_by = \"Nope\"\n").unwrap_err().to_string();
    assert_eq!(err, "tables.EmailEvents.group_by: EmailEvents has no column `Nope`");
    let err = Config::parse("[tables.DeviceNetworkEvents]\ngroup_by = \"RemotePort\"\n").unwrap_err().to_string();
    assert!(err.contains("grouping takes a string column"), "{err}");
    let err = Config::parse("[tables.default]\ngroup_by = \"ActionType\"\n").unwrap_err().to_string();
    assert!(err.starts_with("tables.default.group_by: a grouping column belongs to one table"), "{err}");
}

#[test]
fn prices_can_be_overridden_in_part() {
    let c = Config::parse("[prices]\nanalytics_per_gb = 1.0\n").unwrap();
    assert_eq!(c.prices.analytics_per_gb, 1.0);
    assert_eq!(c.prices.basic_per_gb, Prices::default().basic_per_gb);
    let err = Config::parse("[prices]\nanalytics = 1.0\n").unwrap_err().to_string();
    assert!(err.contains("unknown field `analytics`"), "{err}");
}

/// Two DCRs of kind Direct, as `schemas dcr` generates them: each with its own endpoint.
const TWO_DCRS: &str = r#"
[tables.DeviceNetworkEvents]
sentinel = true

[tables.DeviceProcessEvents]
sentinel = true

[tables.EmailEvents]
sentinel = true
dcr_immutable_id = "dcr-2222"

[sentinel]

[sentinel.dcrs.dcr-1111]
endpoint = "https://defender-ingest-1-abcd.eastus-1.ingest.monitor.azure.com"
tables = ["DeviceNetworkEvents", "DeviceProcessEvents"]

[sentinel.dcrs.dcr-2222]
endpoint = "https://defender-ingest-2-efgh.eastus-1.ingest.monitor.azure.com/"

[sentinel.auth]
method = "azure_cli"
"#;

fn live(text: &str) -> SentinelConfig {
    match Config::parse(text).unwrap().sentinel_target(&Catalog::embedded()).unwrap() {
        Some(SentinelTarget::Live(c)) => c.into_config(AuthConfig::AzureCli, None).unwrap(),
        other => panic!("a live target, not {other:?}"),
    }
}

fn target_error(text: &str) -> String {
    Config::parse(text).unwrap().sentinel_target(&Catalog::embedded()).unwrap_err().to_string()
}

#[test]
fn each_dcr_can_have_its_own_endpoint_and_list_its_tables() {
    let c = live(TWO_DCRS);
    let dcr = |t: &str| c.tables[t].dcr_immutable_id.as_str();
    assert_eq!(
        [dcr("DeviceNetworkEvents"), dcr("DeviceProcessEvents"), dcr("EmailEvents")],
        ["dcr-1111", "dcr-1111", "dcr-2222"]
    );
    assert_eq!(c.endpoint, "", "no default endpoint");
    assert_eq!(c.endpoint_for("dcr-1111"), "https://defender-ingest-1-abcd.eastus-1.ingest.monitor.azure.com");
    assert_eq!(c.endpoint_for("dcr-2222"), "https://defender-ingest-2-efgh.eastus-1.ingest.monitor.azure.com/");
    assert_eq!(c.endpoints().len(), 2);
}

#[test]
fn one_endpoint_for_every_dcr_still_works_and_a_dcr_can_override_it() {
    let one = "[tables.DeviceEvents]\nsentinel = true\n[tables.EmailEvents]\nsentinel = true\n\
               dcr_immutable_id = \"dcr-2\"\n[sentinel]\nendpoint = \"https://dce.eastus-1.ingest.monitor.azure.com\"\n\
               dcr_immutable_id = \"dcr-1\"\n[sentinel.auth]\nmethod = \"azure_cli\"\n";
    let c = live(one);
    assert!(c.dcr_endpoints.is_empty());
    for dcr in ["dcr-1", "dcr-2"] {
        assert_eq!(c.endpoint_for(dcr), "https://dce.eastus-1.ingest.monitor.azure.com", "{dcr}: the DCE");
    }
    let mixed = one.replace(
        "[sentinel.auth]",
        "[sentinel.dcrs.dcr-2]\nendpoint = \"https://defender-ingest-2.eastus-1.ingest.monitor.azure.com\"\n[sentinel.auth]",
    );
    let c = live(&mixed);
    assert_eq!(c.endpoint_for("dcr-1"), "https://dce.eastus-1.ingest.monitor.azure.com");
    assert_eq!(c.endpoint_for("dcr-2"), "https://defender-ingest-2.eastus-1.ingest.monitor.azure.com");
}

#[test]
fn dcr_and_endpoint_mistakes_name_the_key_and_its_line() {
    let err = |text: &str| Config::parse(text).unwrap_err().to_string();
    let e = err(&TWO_DCRS.replace("https://defender-ingest-2", "http://defender-ingest-2"));
    assert!(e.starts_with("`sentinel.dcrs.dcr-2222.endpoint` at line 19 must be an https url"), "{e}");
    let e = err(&TWO_DCRS.replace("[sentinel]\n", "[sentinel]\nendpoint = \"dce.example\"\n"));
    assert!(e.starts_with("`sentinel.endpoint` at line 13 \"dce.example\" is not a url"), "{e}");
    let e = err(&TWO_DCRS.replace("\"DeviceProcessEvents\"]", "\"DeviceProcesEvents\"]"));
    assert!(e.starts_with("`sentinel.dcrs.dcr-1111.tables` at line 16: DeviceProcesEvents is not a table"), "{e}");
    let e = err(&TWO_DCRS.replace("\"DeviceProcessEvents\"]", "\"DeviceTvmSoftwareInventory\"]"));
    assert!(e.contains("line 16: DeviceTvmSoftwareInventory is a Defender Vulnerability Management (TVM)"), "{e}");
    let e = err(&TWO_DCRS.replace(".com/\"\n", ".com/\"\ntables = [\"DeviceNetworkEvents\"]\n"));
    assert!(e.starts_with("`sentinel.dcrs.dcr-2222.tables` at line 20: DeviceNetworkEvents is also listed in `sentinel.dcrs.dcr-1111.tables`"), "{e}");
    let e = err(&TWO_DCRS.replace("\"DeviceNetworkEvents\", ", "\"DeviceNetworkEvents\", \"EmailEvents\", "));
    assert!(e.contains("line 16: EmailEvents has its own tables.EmailEvents.dcr_immutable_id = \"dcr-2222\""), "{e}");
    let e = err(&TWO_DCRS.replace("dcr_immutable_id = \"dcr-2222\"", ""));
    assert!(e.starts_with("`sentinel.dcrs.dcr-2222` at line 18: no table goes to this DCR"), "{e}");
    let e = err(&TWO_DCRS.replace("tables = [", "table = ["));
    assert!(e.contains("line 16") && e.contains("unknown field `table`, expected `endpoint` or `tables`"), "{e}");
}

#[test]
fn every_table_sent_needs_a_dcr_and_an_endpoint() {
    let e = target_error(
        &TWO_DCRS.replace("\nendpoint = \"https://defender-ingest-2-efgh.eastus-1.ingest.monitor.azure.com/\"", ""),
    );
    assert!(e.starts_with("tables.EmailEvents: sent to DCR dcr-2222, which has no endpoint: set `endpoint` in [sentinel.dcrs.dcr-2222]"), "{e}");
    let e = target_error(
        &TWO_DCRS.replace("[tables.EmailEvents]", "[tables.DeviceLogonEvents]\nsentinel = true\n[tables.EmailEvents]"),
    );
    assert!(
        e.starts_with(
            "tables.DeviceLogonEvents: sent to Sentinel but no DCR: list it in `tables` of its [sentinel.dcrs."
        ),
        "{e}"
    );
    let e = target_error(&TWO_DCRS.replace("[sentinel]\n", "[sentinel]\ndry_run_dir = \"out/sentinel\"\n"));
    assert!(e.starts_with("[sentinel] needs exactly one of `dry_run_dir`"), "{e}");
}

#[test]
fn each_table_sent_gets_its_plan_and_plan_mistakes_name_the_key() {
    let text = TWO_DCRS.replace(
        "[tables.DeviceNetworkEvents]\nsentinel = true\n",
        "[tables.DeviceNetworkEvents]\nsentinel = true\nplan = \"auxiliary\"\n",
    );
    let c = live(&text);
    assert_eq!(c.tables["DeviceNetworkEvents"].plan, Tier::Auxiliary);
    assert_eq!(c.tables["DeviceProcessEvents"].plan, Tier::Analytics, "the default plan");
    let c = live(&text.replace("[tables.EmailEvents]", "[tables.default]\nplan = \"basic\"\n[tables.EmailEvents]"));
    assert_eq!(c.tables["EmailEvents"].plan, Tier::Basic, "tables.default.plan");
    assert_eq!(c.tables["DeviceNetworkEvents"].plan, Tier::Auxiliary, "its own plan first");
    let err = |text: &str| Config::parse(text).unwrap_err().to_string();
    let e = err(&text.replace("\"auxiliary\"", "\"lake\""));
    assert!(
        e.starts_with("line 4, column 8: unknown variant `lake`, expected one of `analytics`, `basic`, `auxiliary`"),
        "{e}"
    );
    let e = err("[tables.DeviceTvmSoftwareInventory]\nplan = \"basic\"\n");
    assert!(e.starts_with("tables.DeviceTvmSoftwareInventory.plan: DeviceTvmSoftwareInventory is a Defender Vulnerability Management (TVM) table"), "{e}");
    let e = err("[tables.DeviceEvents]\nplan = \"auxiliary\"\n");
    assert!(e.starts_with("tables.DeviceEvents.plan: DeviceEvents is not sent to Sentinel"), "{e}");
    let e =
        err(&text
            .replace("plan = \"auxiliary\"\n", "plan = \"auxiliary\"\nstream = \"Microsoft-DeviceNetworkEvents\"\n"));
    assert!(e.starts_with("tables.DeviceNetworkEvents.plan: the Auxiliary plan is only for custom tables"), "{e}");
}

#[test]
fn values_out_of_range_name_the_key() {
    let err = Config::parse("[archive]\nurl = \"x\"\nzstd_level = 40\n").unwrap_err().to_string();
    assert_eq!(err, "`archive.zstd_level` must be between 1 and 22, got 40");
    let err = Config::parse("[source.files]\npaths = []\n").unwrap_err().to_string();
    assert_eq!(err, "`source.files.paths` is empty: expected at least one file or glob");
}

#[test]
fn an_empty_file_has_the_libraries_defaults() {
    let c = Config::parse(
        "[archive]\nurl = \"x\"\n[source.kafka]\nbootstrap = \"b:9093\"\ntopics = [\"t\"]\nplaintext = true\n",
    )
    .unwrap();
    let (options, ours) = (c.pipeline_options(), defender_pipeline::PipelineOptions::default());
    assert_eq!(options.flush, ours.flush);
    assert_eq!(options.budget_bytes, ours.budget_bytes);
    assert_eq!(options.max_unknown_tables, ours.max_unknown_tables);
    assert_eq!(options.cpu_workers, ours.cpu_workers, "one per core");
    assert_eq!(options.sentinel_in_flight, ours.sentinel_in_flight);
    let (archive, ours) = (c.archive_config(), defender_sinks::ArchiveConfig::default());
    assert_eq!(
        (archive.roll_bytes, archive.roll_age, archive.zstd_level, archive.max_buffered_bytes),
        (ours.roll_bytes, ours.roll_age, ours.zstd_level, ours.max_buffered_bytes)
    );
    let k = c.source.kafka.as_ref().unwrap();
    let ours = defender_sources::KafkaConfig::new("b:9093", vec!["t".into()], "g");
    assert_eq!(k.start_position().unwrap(), ours.start);
    assert_eq!(std::time::Duration::from_millis(k.commit_interval_ms), ours.commit_interval);
    assert_eq!(std::time::Duration::from_millis(k.session_timeout_ms), ours.session_timeout);
    assert_eq!(std::time::Duration::from_secs(k.revoke_timeout_seconds), ours.revoke_timeout);
    assert_eq!(std::time::Duration::from_secs(c.service.shutdown_grace_seconds), ours.shutdown_grace);
}

#[test]
fn ages_take_fractions_of_a_second_within_bounds_and_the_archive_bound_is_a_key() {
    use std::time::Duration;
    let c = Config::parse(
        "[pipeline]\nflush_seconds = 0.25\n[archive]\nurl = \"x\"\nroll_seconds = 0.5\nmax_buffered_mb = 96\n",
    )
    .unwrap();
    assert_eq!(c.pipeline_options().flush.max_age, Duration::from_millis(250));
    let a = c.archive_config();
    assert_eq!((a.roll_age, a.max_buffered_bytes), (Duration::from_millis(500), 96 << 20));
    // Whole seconds stay whole seconds.
    let c = Config::parse("[pipeline]\nflush_seconds = 2\n[archive]\nurl = \"x\"\nroll_seconds = 3600\n").unwrap();
    assert_eq!(c.pipeline_options().flush.max_age, Duration::from_secs(2));
    assert_eq!(c.archive_config().roll_age, Duration::from_secs(3600));
    let err = |text: &str| Config::parse(text).unwrap_err().to_string();
    for (text, key) in [
        ("[pipeline]\nflush_seconds = 0\n", "`pipeline.flush_seconds`"),
        ("[pipeline]\nflush_seconds = -1\n", "`pipeline.flush_seconds`"),
        ("[pipeline]\nflush_seconds = 0.01\n", "`pipeline.flush_seconds`"),
        ("[pipeline]\nflush_seconds = nan\n", "`pipeline.flush_seconds`"),
        ("[pipeline]\nflush_seconds = inf\n", "`pipeline.flush_seconds`"),
        ("[archive]\nurl = \"x\"\nroll_seconds = 1e300\n", "`archive.roll_seconds`"),
    ] {
        let e = err(text);
        assert!(e.starts_with(&format!("{key} must be between 0.1 and 604800")), "{text}: {e}");
    }
    let e = err("[pipeline]\nflush_seconds = \"5s\"\n");
    assert!(e.contains("line 2") && e.contains("a number of seconds, such as 5 or 0.5"), "{e}");
    let e = err("[archive]\nurl = \"x\"\nmax_buffered_mb = 0\n");
    assert_eq!(e, "`archive.max_buffered_mb` must be between 1 and 65536, got 0");
}

#[test]
fn cpu_workers_and_sentinel_in_flight_reach_the_pipeline_and_must_be_at_least_one() {
    let c = Config::parse("[pipeline]\ncpu_workers = 3\nsentinel_in_flight = 2\n").unwrap();
    let options = c.pipeline_options();
    assert_eq!((options.cpu_workers, options.sentinel_in_flight), (3, 2));
    let err = Config::parse("[pipeline]\ncpu_workers = 0\n").unwrap_err().to_string();
    assert_eq!(err, "`pipeline.cpu_workers` must be at least 1");
    let err = Config::parse("[pipeline]\nsentinel_in_flight = 0\n").unwrap_err().to_string();
    assert_eq!(err, "`pipeline.sentinel_in_flight` must be at least 1");
}

#[test]
fn history_sections_are_one_source_with_their_window_checked_by_key() {
    use defender_sources::backfill::Kind;
    let c =
        Config::parse("[source.storage]\nlocation = \"az://x\"\nfrom = \"2024-05-01\"\ntables = [\"DeviceInfo\"]\n")
            .unwrap();
    let h = c.source.history().unwrap().unwrap();
    assert_eq!((h.kind, h.location.as_str(), h.tables.clone()), (Kind::Storage, "az://x", vec!["DeviceInfo".into()]));
    assert_eq!(h.from.unwrap().to_rfc3339(), "2024-05-01T00:00:00+00:00");
    let c = Config::parse("[source.capture]\nlocation = \"/data\"\nto = \"2024-05-01T10:00:00Z\"\n").unwrap();
    assert_eq!(c.source.history().unwrap().unwrap().kind, Kind::Capture);

    let err = Config::parse("[source.capture]\nlocation = \"/d\"\nfrom = \"yesterday\"\n").unwrap_err().to_string();
    assert!(err.starts_with("`source.capture.from`: expected a UTC time"), "{err}");
    let err = Config::parse("[source.storage]\nlocation = \"/d\"\nfrom = \"2024-05-02\"\nto = \"2024-05-01\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("`source.storage.from` is not before `source.storage.to`"), "{err}");
    let err = Config::parse("[source.capture]\nlocation = \"/d\"\ntables = [\"X\"]\n").unwrap_err().to_string();
    assert!(err.contains("tables"), "tables is storage's: {err}");
    let err = Config::parse("[source.capture]\nlocation = \"/d\"\n[source.files]\npaths = [\"x\"]\n")
        .unwrap_err()
        .to_string();
    assert_eq!(err, "[source.files] and [source.capture] are both set: a run reads exactly one source");
}

#[test]
fn a_storage_poll_interval_is_seconds_above_zero_and_has_no_window_end() {
    use std::time::Duration;
    let parse = |extra: &str| Config::parse(&format!("[source.storage]\nlocation = \"/d\"\n{extra}\n"));
    let h = |c: Config| c.source.history().unwrap().unwrap();
    assert_eq!(h(parse("").unwrap()).poll_interval, None, "absent: read to the end");
    assert_eq!(h(parse("poll_interval_seconds = 30").unwrap()).poll_interval, Some(Duration::from_secs(30)));
    assert_eq!(h(parse("poll_interval_seconds = 0.5").unwrap()).poll_interval, Some(Duration::from_millis(500)));
    for bad in ["0", "-1", "nan"] {
        let err = parse(&format!("poll_interval_seconds = {bad}")).unwrap_err().to_string();
        assert!(
            err.starts_with("`source.storage.poll_interval_seconds`: expected a number of seconds above 0"),
            "{err}"
        );
    }
    let err = parse("poll_interval_seconds = \"30s\"").unwrap_err().to_string();
    assert!(err.contains("poll_interval_seconds"), "{err}");
    let err = parse("poll_interval_seconds = 30\nto = \"2024-05-01\"").unwrap_err().to_string();
    assert!(err.contains("are both set: a polling source"), "{err}");
    let err = Config::parse("[source.capture]\nlocation = \"/d\"\npoll_interval_seconds = 30\n").unwrap_err();
    assert!(err.to_string().contains("poll_interval_seconds"), "storage's only: {err}");
}

const EVENTHUBS: &str = "[source.eventhubs]\nnamespace = \"contoso.servicebus.windows.net\"\nevent_hub = \"defender\"\n\
    checkpoint_container = \"https://acct.blob.core.windows.net/checkpoints\"\n";

#[test]
fn eventhubs_defaults_come_from_the_source_and_mistakes_name_their_key() {
    let ok = |extra: &str| Config::parse(&format!("{EVENTHUBS}{extra}")).unwrap();
    let err = |extra: &str| Config::parse(&format!("{EVENTHUBS}{extra}")).unwrap_err().to_string();
    let creds = "connection_string_env = \"EH\"\ncheckpoint_sas_env = \"SAS\"\n";
    let c = ok(creds);
    let e = c.source.eventhubs.as_ref().unwrap();
    use defender_sources::eventhubs::defaults as d;
    assert_eq!(e.consumer_group, d::CONSUMER_GROUP);
    assert_eq!(e.prefetch, d::PREFETCH);
    assert_eq!(e.load_balancing_interval_seconds, d::LOAD_BALANCING_INTERVAL.as_secs());
    assert_eq!(e.partition_expiration_seconds, d::PARTITION_EXPIRATION.as_secs());
    assert_eq!(e.checkpoint_interval_ms, d::CHECKPOINT_INTERVAL.as_millis() as u64);
    assert_eq!(e.start_position().unwrap(), defender_sources::StartPosition::Earliest);
    assert_eq!(e.checkpoint_container_url().unwrap().as_str(), "https://acct.blob.core.windows.net/checkpoints");
    let az = ok(creds).source.eventhubs.unwrap();
    assert_eq!(az.checkpoint_container_url().unwrap().host_str(), Some("acct.blob.core.windows.net"));
    let az = Config::parse(&format!(
        "{}{creds}",
        EVENTHUBS.replace("https://acct.blob.core.windows.net/checkpoints", "az://acct/checkpoints")
    ))
    .unwrap();
    assert_eq!(
        az.source.eventhubs.unwrap().checkpoint_container_url().unwrap().as_str(),
        "https://acct.blob.core.windows.net/checkpoints"
    );

    assert!(err("checkpoint_sas_env = \"SAS\"\n").contains("exactly one of `connection_string_env`"));
    assert!(err("connection_string_env = \"EH\"\n").contains("exactly one of `checkpoint_sas_env`"));
    let e = err(&format!("{creds}start_position = \"yesterday\"\n"));
    assert!(e.contains("`source.eventhubs.start_position` is \"yesterday\""), "{e}");
    let e = err(&format!("{creds}partition_expiration_seconds = 10\n"));
    assert!(e.contains("`source.eventhubs.partition_expiration_seconds` (10) must be longer"), "{e}");
    let e = err(&format!("{creds}custom_endpoint = \"127.0.0.1:5672\"\n"));
    assert!(e.contains("`source.eventhubs.custom_endpoint`"), "{e}");
    let e = err(&format!("{creds}checkpoint_interval = 5\n"));
    assert!(e.contains("line 7") && e.contains("unknown field `checkpoint_interval`"), "{e}");
    let text = creds.replace("EH", "Endpoint=sb://x/;SharedAccessKey=Zm9vYmFy");
    let e = err(&text);
    assert!(e.contains("`source.eventhubs.connection_string_env` must be the name") && !e.contains("Zm9vYmFy"), "{e}");
    let bad_ns = Config::parse(&format!("{}{creds}", EVENTHUBS.replace("contoso.servicebus.windows.net", "sb://x:1")))
        .unwrap_err()
        .to_string();
    assert!(bad_ns.contains("`source.eventhubs.namespace`"), "{bad_ns}");
    let sas_in_url = Config::parse(&format!("{}{creds}", EVENTHUBS.replace("/checkpoints", "/checkpoints?sig=Zm9v")))
        .unwrap_err()
        .to_string();
    assert!(sas_in_url.contains("`source.eventhubs.checkpoint_container`") && !sas_in_url.contains("Zm9v"));
}

#[test]
fn only_one_source_section_is_allowed() {
    let text = format!(
        "{EVENTHUBS}connection_string_env = \"EH\"\ncheckpoint_sas_env = \"SAS\"\n\
         [source.kafka]\nbootstrap = \"b:9093\"\ntopics = [\"t\"]\nplaintext = true\n"
    );
    let e = Config::parse(&text).unwrap_err().to_string();
    assert!(e.contains("[source.kafka] and [source.eventhubs] are both set: a run reads exactly one source"), "{e}");
}
