//! The Sentinel client against the strict local Logs Ingestion API and token endpoint
//! (`defender-ingestion-server`, in process, TLS with a generated CA): every row lands, faults
//! are retried as DESIGN §3 says, permanent errors stop the sink with a clear message.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, Instant},
};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray, new_null_array};
use defender_core::{Catalog, TableBatch};
use defender_ingestion_server::{Fault, ServerConfig, TestServer};
use defender_sinks::sentinel::{
    AuthConfig, ClientError, PackMode, RetryPolicy, RowEncoder, Secret, SentinelConfig, SentinelError, SentinelSink,
    TIME_GENERATED,
};

const DCR: &str = "dcr-00112233445566778899aabbccddeeff";
const TABLE: &str = "DeviceEvents";
const STREAM: &str = "Custom-DeviceEvents_CL";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "client-1";
const CLIENT_SECRET: &str = "local-secret";

/// `n` DeviceEvents rows, distinct by `DeviceName` (`pad` bytes of pseudo-random hex added to
/// each), every other column null.
fn batch(catalog: &Catalog, n: usize, pad: usize, first: usize) -> TableBatch {
    table_batch(catalog, TABLE, n, pad, first)
}

/// `n` rows of `table` as [`batch`] makes them, `ReportId` counting from `first`.
fn table_batch(catalog: &Catalog, table: &str, n: usize, pad: usize, first: usize) -> TableBatch {
    let schema = catalog.get(table).expect("an embedded table").arrow_schema();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "Timestamp" => Arc::new(
                    TimestampNanosecondArray::from_iter_values((0..n).map(|i| 1_763_634_600_000_000_000 + i as i64))
                        .with_timezone("UTC"),
                ),
                "DeviceName" => Arc::new(StringArray::from_iter_values((first..first + n).map(|i| {
                    let mut s = format!("device-{i:08}-");
                    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    while s.len() < pad + 16 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        s.push_str(&format!("{x:016x}"));
                    }
                    s
                }))),
                "ReportId" => Arc::new(Int64Array::from_iter_values((first..first + n).map(|i| i as i64))),
                _ => new_null_array(f.data_type(), n),
            }
        })
        .collect();
    TableBatch {
        table: table.into(),
        unknown_table: false,
        source: "test/0".into(),
        partition: 0,
        first_offset: first as i64,
        last_offset: (first + n) as i64 - 1,
        raw_bytes: 0,
        batch: RecordBatch::try_new(schema, columns).unwrap(),
    }
}

struct Setup {
    server: TestServer,
    sink: SentinelSink,
    catalog: Arc<Catalog>,
}

async fn setup(tweak: impl FnOnce(&mut SentinelConfig)) -> Setup {
    setup_with(|_| {}, tweak).await
}

async fn setup_with(server_tweak: impl FnOnce(&mut ServerConfig), tweak: impl FnOnce(&mut SentinelConfig)) -> Setup {
    let catalog = Arc::new(Catalog::embedded());
    let mut server_config = server_config(&catalog, DCR, TABLE);
    server_tweak(&mut server_config);
    let server = TestServer::start(server_config).await.unwrap();
    let auth = AuthConfig::ClientSecret {
        tenant: TENANT.into(),
        client_id: CLIENT_ID.into(),
        secret: Secret::new(CLIENT_SECRET),
        authority_host: server.authority.clone(),
    };
    let mut config = SentinelConfig::new(server.endpoint.clone(), auth).with_table(TABLE, DCR, None);
    config.extra_root_pem = Some(server.ca_pem.clone());
    config.request_timeout = Duration::from_secs(10);
    config.retry = RetryPolicy { initial: Duration::from_millis(10), max: Duration::from_millis(100), multiplier: 2.0 };
    tweak(&mut config);
    let sink = SentinelSink::new(config, catalog.clone()).unwrap();
    Setup { server, sink, catalog }
}

/// A server whose DCR `dcr` declares the stream `Custom-<table>_CL`: the table's columns plus
/// the two every row gets.
fn server_config(catalog: &Catalog, dcr: &str, table: &str) -> ServerConfig {
    let schema = catalog.get(table).unwrap();
    let encoder = RowEncoder::new(schema, &schema.arrow_schema()).unwrap();
    let mut columns: Vec<String> = encoder.sentinel_names().map(str::to_string).collect();
    columns.extend([TIME_GENERATED.to_string(), "RecordId_CF".to_string()]);
    let streams = BTreeMap::from([(dcr.to_string(), BTreeMap::from([(format!("Custom-{table}_CL"), columns)]))]);
    ServerConfig::new(streams, TENANT, CLIENT_ID, CLIENT_SECRET)
}

/// The `RecordId_CF` of every accepted row, and how many rows were accepted.
fn accepted_ids(server: &TestServer) -> (BTreeSet<String>, usize) {
    let rows = server.accepted(DCR, STREAM);
    let ids = rows.iter().map(|r| r["RecordId_CF"].as_str().expect("every row has an id").to_string()).collect();
    (ids, rows.len())
}

#[tokio::test]
async fn every_row_is_accepted_exactly_once_without_faults() {
    let s = setup(|c| c.pack = PackMode::Uncompressed { max_bytes: 64 * 1024 }).await;
    let delivered = s.sink.send(&batch(&s.catalog, 2_000, 100, 0)).await.unwrap();
    assert_eq!(delivered.sent.rows, 2_000);
    assert_eq!((delivered.sent.rejected, delivered.retries, delivered.throttled), (0, 0, 0));
    let (ids, rows) = accepted_ids(&s.server);
    assert_eq!((ids.len(), rows), (2_000, 2_000), "each row exactly once");
    let requests = s.server.requests();
    assert!(requests.len() > 1, "several bodies");
    assert_eq!(requests.len(), delivered.sent.bodies);
    assert!(requests.iter().all(|r| r.status == 204 && r.gzip && r.decompressed_bytes <= 64 * 1024));
    let request_ids: BTreeSet<_> = requests.iter().map(|r| r.client_request_id.clone().expect("sent")).collect();
    assert_eq!(request_ids.len(), requests.len(), "a fresh x-ms-client-request-id per call");
}

#[tokio::test]
async fn a_429_storm_is_waited_out_per_retry_after_then_every_row_lands() {
    let s = setup(|_| {}).await;
    s.server.inject(Fault::Status { status: 429, retry_after: Some(1) });
    for _ in 0..4 {
        s.server.inject(Fault::Status { status: 429, retry_after: Some(0) });
    }
    let start = Instant::now();
    let delivered = s.sink.send(&batch(&s.catalog, 300, 50, 0)).await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was honoured");
    assert_eq!(delivered.throttled, 5);
    assert_eq!(delivered.sent.rows, 300);
    let (ids, rows) = accepted_ids(&s.server);
    assert_eq!((ids.len(), rows), (300, 300));
    let statuses: Vec<u16> = s.server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 429, 429, 429, 204]);
}

#[tokio::test]
async fn server_errors_500_and_503_are_retried_until_accepted() {
    let s = setup(|_| {}).await;
    s.server.inject(Fault::Status { status: 500, retry_after: None });
    s.server.inject(Fault::Status { status: 503, retry_after: None });
    s.server.inject(Fault::Status { status: 503, retry_after: Some(0) });
    let delivered = s.sink.send(&batch(&s.catalog, 100, 50, 0)).await.unwrap();
    assert_eq!((delivered.retries, delivered.throttled), (2, 1));
    let (ids, rows) = accepted_ids(&s.server);
    assert_eq!((ids.len(), rows), (100, 100));
}

#[tokio::test]
async fn normal_packing_never_meets_a_413_in_either_mode() {
    for mode in [PackMode::SDK, PackMode::COMPRESSED] {
        let s = setup(|c| c.pack = mode).await;
        let delivered = s.sink.send(&batch(&s.catalog, 3_000, 1_000, 0)).await.unwrap();
        let requests = s.server.requests();
        assert!(
            requests.iter().all(|r| r.status == 204),
            "{mode:?}: {:?}",
            requests.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        assert!(delivered.sent.bodies > 1, "{mode:?}: more than 1 MiB of json makes several bodies");
        assert_eq!(delivered.splits, 0);
        let (ids, rows) = accepted_ids(&s.server);
        assert_eq!((ids.len(), rows), (3_000, 3_000), "{mode:?}");
    }
}

#[tokio::test]
async fn dropped_connections_are_retried_and_every_row_lands_at_least_once() {
    let s = setup(|_| {}).await;
    s.server.inject(Fault::Drop);
    s.server.inject(Fault::AcceptThenDrop);
    let delivered = s.sink.send(&batch(&s.catalog, 200, 50, 0)).await.unwrap();
    assert_eq!(delivered.retries, 2);
    let (ids, rows) = accepted_ids(&s.server);
    assert_eq!(ids.len(), 200, "every row at least once");
    assert_eq!(rows, 400, "the call accepted before the drop was sent again: duplicates, same RecordId_CF");
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_once_then_the_call_succeeds() {
    let s = setup(|_| {}).await;
    let first = s.sink.send(&batch(&s.catalog, 10, 10, 0)).await.unwrap();
    assert_eq!(first.refreshes, 0);
    s.server.revoke_tokens();
    let second = s.sink.send(&batch(&s.catalog, 10, 10, 10)).await.unwrap();
    assert_eq!(second.refreshes, 1);
    let statuses: Vec<u16> = s.server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [204, 401, 204]);
    let (ids, rows) = accepted_ids(&s.server);
    assert_eq!((ids.len(), rows), (20, 20));
}

#[tokio::test]
async fn a_second_401_in_a_row_is_a_permanent_error() {
    let s = setup(|_| {}).await;
    s.server.inject(Fault::Status { status: 401, retry_after: None });
    s.server.inject(Fault::Status { status: 401, retry_after: None });
    let error = s.sink.send(&batch(&s.catalog, 10, 10, 0)).await.unwrap_err();
    assert!(
        matches!(&error, SentinelError::Client(ClientError::Refused { error, .. }) if error.status == Some(401)),
        "{error}"
    );
    assert_eq!(s.server.requests().len(), 2);
}

#[tokio::test]
async fn a_403_stops_the_sink_with_the_permission_hint() {
    let s = setup(|_| {}).await;
    s.server.inject(Fault::Status { status: 403, retry_after: None });
    let error = s.sink.send(&batch(&s.catalog, 10, 10, 0)).await.unwrap_err().to_string();
    assert!(error.contains("403"), "{error}");
    assert!(error.contains("Monitoring Metrics Publisher") && error.contains("30 minutes"), "{error}");
    assert_eq!(s.server.requests().len(), 1, "no retry");
    assert!(s.server.accepted(DCR, STREAM).is_empty());
}

#[tokio::test]
async fn an_undeclared_stream_stops_the_sink_with_the_dcr_hint() {
    let s = setup(|c| c.tables.get_mut(TABLE).unwrap().stream = Some("Custom-Nope_CL".into())).await;
    let error = s.sink.send(&batch(&s.catalog, 10, 10, 0)).await.unwrap_err().to_string();
    assert!(error.contains("404") && error.contains("check the DCR immutable id and the stream name"), "{error}");
}

#[tokio::test]
async fn a_wrong_client_secret_is_a_permanent_auth_error() {
    let s = setup(|c| {
        if let AuthConfig::ClientSecret { secret, .. } = &mut c.auth {
            *secret = Secret::new("wrong-secret");
        }
    })
    .await;
    let error = s.sink.send(&batch(&s.catalog, 10, 10, 0)).await.unwrap_err();
    assert!(matches!(&error, SentinelError::Client(ClientError::Auth(e)) if e.permanent), "{error}");
    assert!(!error.to_string().contains("wrong-secret"), "{error}");
    assert!(s.server.requests().is_empty());
}

/// A fresh RSA key (PKCS#8 PEM; ring cannot generate RSA keys) and a self-signed certificate
/// for it made by rcgen (PEM).
fn rsa_certificate() -> (String, String) {
    let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let key_pem = String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let key_pair = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["defender-ingest".to_string()]).unwrap().self_signed(&key_pair).unwrap();
    (key_pem, cert.pem())
}

/// Replaces the client-secret auth of `setup` by the certificate in `pem` (key + certificate).
fn use_certificate(c: &mut SentinelConfig, pem: String) {
    let AuthConfig::ClientSecret { tenant, client_id, authority_host, .. } = c.auth.clone() else {
        unreachable!("setup configures a client secret")
    };
    c.auth = AuthConfig::ClientCertificate { tenant, client_id, certificate: Secret::new(pem), authority_host };
}

#[tokio::test]
async fn client_certificate_auth_gets_every_row_accepted() {
    let (key, cert) = rsa_certificate();
    let registered = cert.clone();
    let s =
        setup_with(|sc| sc.client_certificate_pem = Some(registered), |c| use_certificate(c, format!("{key}{cert}")))
            .await;
    let delivered = s.sink.send(&batch(&s.catalog, 500, 50, 0)).await.unwrap();
    assert_eq!((delivered.sent.rows, delivered.sent.rejected), (500, 0));
    let (ids, rows) = accepted_ids(&s.server);
    assert_eq!((ids.len(), rows), (500, 500), "each row exactly once");
    assert!(s.server.requests().iter().all(|r| r.status == 204));
}

#[tokio::test]
async fn a_wrong_client_certificate_is_a_permanent_auth_error() {
    let (_, registered) = rsa_certificate();
    let (key, cert) = rsa_certificate();
    let s =
        setup_with(|sc| sc.client_certificate_pem = Some(registered), |c| use_certificate(c, format!("{key}{cert}")))
            .await;
    let error = s.sink.send(&batch(&s.catalog, 10, 10, 0)).await.unwrap_err();
    assert!(matches!(&error, SentinelError::Client(ClientError::Auth(e)) if e.permanent), "{error}");
    assert!(error.to_string().contains("signature does not match"), "refused by the token endpoint: {error}");
    assert!(!error.to_string().contains("PRIVATE KEY"), "{error}");
    assert!(s.server.requests().is_empty());
}

#[tokio::test]
async fn a_413_halves_the_body_until_every_part_fits() {
    let s = setup_with(|server| server.max_wire_bytes = 8 * 1024, |_| {}).await;
    let delivered = s.sink.send(&batch(&s.catalog, 200, 1_000, 0)).await.unwrap();
    assert!(delivered.splits >= 3, "{delivered:?}");
    assert_eq!((delivered.sent.rows, delivered.sent.rejected), (200, 0));
    let (ids, rows) = accepted_ids(&s.server);
    assert_eq!((ids.len(), rows), (200, 200), "split bodies hold each row once");
    assert!(s.server.requests().iter().any(|r| r.status == 413));
}

#[tokio::test]
async fn a_single_row_refused_with_413_is_reported_as_rejected_not_dropped_silently() {
    let s = setup(|_| {}).await;
    s.server.inject(Fault::Status { status: 413, retry_after: None });
    s.server.inject(Fault::Status { status: 413, retry_after: None });
    let delivered = s.sink.send(&batch(&s.catalog, 2, 10, 0)).await.unwrap();
    assert_eq!((delivered.splits, delivered.sent.rows, delivered.sent.rejected), (1, 1, 1));
    assert_eq!(accepted_ids(&s.server).1, 1);
}

/// `b` with the string column `column` set in the rows `at` only (null elsewhere: a null is
/// left out of the row's JSON, so only those rows carry the column).
fn with_values_at(b: TableBatch, column: &str, at: &[usize]) -> TableBatch {
    let schema = b.batch.schema();
    let index = schema.index_of(column).unwrap();
    let n = b.batch.num_rows();
    let values: StringArray = (0..n).map(|i| at.contains(&i).then(|| format!("value-{i}"))).collect();
    let mut columns = b.batch.columns().to_vec();
    columns[index] = Arc::new(values);
    TableBatch { batch: RecordBatch::try_new(schema, columns).unwrap(), ..b }
}

/// A server whose stream declaration lacks `column`: a row carrying it is refused with 400.
fn without_column(column: &'static str) -> impl FnOnce(&mut ServerConfig) {
    move |server| {
        for columns in server.streams.values_mut().flat_map(|streams| streams.values_mut()) {
            columns.retain(|c| c != column);
        }
    }
}

#[tokio::test]
async fn rows_refused_with_400_are_rejected_on_their_own_and_every_other_row_lands() {
    let s = setup_with(without_column("FileName"), |_| {}).await;
    let bad = [3, 517, 998];
    let b = with_values_at(batch(&s.catalog, 1_000, 100, 0), "FileName", &bad);
    let delivered = s.sink.send(&b).await.unwrap();
    assert_eq!((delivered.sent.rows, delivered.sent.rejected), (997, 3), "{delivered:?}");
    let rejected: BTreeSet<usize> = delivered.sent.rejected_rows.iter().map(|r| r.row).collect();
    assert_eq!(rejected, BTreeSet::from(bad));
    for r in &delivered.sent.rejected_rows {
        assert!(r.reason.contains("400") && r.reason.contains("FileName"), "{}", r.reason);
        let row: serde_json::Value = serde_json::from_slice(&r.json).unwrap();
        assert_eq!(row["FileName"], format!("value-{}", r.row), "the rejected row's own json");
    }
    let (ids, rows) = accepted_ids(&s.server);
    assert_eq!((ids.len(), rows), (997, 997), "every other row exactly once");
    let refused = s.server.requests().iter().filter(|r| r.status == 400).count();
    assert!(refused <= 3 * 11, "halving finds each bad row in about log2(rows) calls: {refused}");
}

#[tokio::test]
async fn a_lone_row_refused_with_400_is_rejected_once_the_stream_has_accepted_rows() {
    let s = setup_with(without_column("FileName"), |_| {}).await;
    s.sink.send(&batch(&s.catalog, 5, 10, 0)).await.unwrap();
    let delivered = s.sink.send(&with_values_at(batch(&s.catalog, 1, 10, 5), "FileName", &[0])).await.unwrap();
    assert_eq!((delivered.sent.rows, delivered.sent.rejected), (0, 1), "{delivered:?}");
    assert_eq!(accepted_ids(&s.server).1, 5);
}

#[tokio::test]
async fn a_stream_that_refuses_every_row_with_400_stops_the_sink_as_a_configuration_error() {
    let s = setup_with(without_column("DeviceName"), |_| {}).await;
    let error = s.sink.send(&batch(&s.catalog, 1_000, 100, 0)).await.unwrap_err().to_string();
    assert!(error.contains("400") && error.contains("DeviceName"), "{error}");
    assert!(s.server.accepted(DCR, STREAM).is_empty());
    let calls = s.server.requests().len() as u32;
    assert!(calls <= defender_sinks::sentinel::MAX_UNPROVEN_REFUSALS + 1, "bounded: {calls} calls");
}

#[tokio::test]
async fn a_call_that_times_out_is_retried_and_its_rows_land_at_least_once() {
    let s = setup(|c| c.request_timeout = Duration::from_millis(500)).await;
    // Get the token first: the timeout applies to the token request too.
    s.sink.send(&batch(&s.catalog, 1, 10, 1_000)).await.unwrap();
    s.server.inject(Fault::Slow(Duration::from_secs(2)));
    let delivered = s.sink.send(&batch(&s.catalog, 50, 10, 0)).await.unwrap();
    assert_eq!(delivered.retries, 1);
    assert_eq!(delivered.sent.rows, 50);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ids, rows) = accepted_ids(&s.server);
    assert_eq!(ids.len(), 51, "every row at least once");
    assert!(rows >= 51);
}

/// Two tables in two DCRs of kind Direct, each reached at its own logs ingestion endpoint (here
/// two servers; one token is good for both, as one Entra token for `https://monitor.azure.com`
/// is for every DCR): each table's rows reach its own DCR's endpoint, and nothing else does.
/// The servers are strict, so a call sent to the other DCR's endpoint would be refused (404).
#[tokio::test]
async fn two_dcrs_with_their_own_endpoints_each_receive_exactly_their_tables_rows() {
    const DCR2: &str = "dcr-ffeeddccbbaa99887766554433221100";
    const TABLE2: &str = "DeviceProcessEvents";
    const STREAM2: &str = "Custom-DeviceProcessEvents_CL";
    let catalog = Arc::new(Catalog::embedded());
    let first = TestServer::start(server_config(&catalog, DCR, TABLE)).await.unwrap();
    let second = TestServer::start_trusting(server_config(&catalog, DCR2, TABLE2), &first).await.unwrap();
    assert_ne!(first.endpoint, second.endpoint);
    let auth = AuthConfig::ClientSecret {
        tenant: TENANT.into(),
        client_id: CLIENT_ID.into(),
        secret: Secret::new(CLIENT_SECRET),
        authority_host: first.authority.clone(),
    };
    // No default endpoint: each DCR names its own.
    let mut config = SentinelConfig::new("", auth)
        .with_table(TABLE, DCR, None)
        .with_dcr_endpoint(DCR, &first.endpoint)
        .with_table(TABLE2, DCR2, None)
        .with_dcr_endpoint(DCR2, &second.endpoint);
    config.extra_root_pem = Some(format!("{}{}", first.ca_pem, second.ca_pem));
    config.pack = PackMode::Uncompressed { max_bytes: 16 * 1024 };
    let sink = SentinelSink::new(config, catalog.clone()).unwrap();

    let a = sink.send(&table_batch(&catalog, TABLE, 300, 50, 0)).await.unwrap();
    let b = sink.send(&table_batch(&catalog, TABLE2, 200, 50, 10_000)).await.unwrap();
    assert_eq!((a.sent.rows, b.sent.rows), (300, 200));
    assert!(a.sent.bodies > 1 && b.sent.bodies > 1, "several calls to each endpoint");

    let report_ids = |server: &TestServer, dcr: &str, stream: &str| -> Vec<i64> {
        let mut ids: Vec<i64> = server.accepted(dcr, stream).iter().map(|r| r["ReportId"].as_i64().unwrap()).collect();
        ids.sort();
        ids
    };
    assert_eq!(report_ids(&first, DCR, STREAM), (0..300).collect::<Vec<_>>(), "DeviceEvents at its endpoint");
    assert_eq!(report_ids(&second, DCR2, STREAM2), (10_000..10_200).collect::<Vec<_>>(), "DeviceProcessEvents at its");
    for (server, dcr, stream, bodies) in [(&first, DCR, STREAM, a.sent.bodies), (&second, DCR2, STREAM2, b.sent.bodies)]
    {
        let requests = server.requests();
        assert_eq!(requests.len(), bodies, "{dcr}: one call per body, no retry");
        assert!(requests.iter().all(|r| r.status == 204 && r.dcr == dcr && r.stream == stream), "{requests:?}");
    }
}

/// The strict server's rules for `table` as an Auxiliary table without transformation: its
/// declared columns with their types (`Extra_CF` a string, as `schemas dcr` declares it).
fn auxiliary_rules(catalog: &Catalog, table: &str) -> defender_ingestion_server::StreamRules {
    let schema = catalog.get(table).unwrap();
    let mut types: BTreeMap<String, String> = defender_core::policy::table_columns(schema)
        .into_iter()
        .map(|(name, ty)| {
            let sentinel = schema.columns.iter().find(|c| c.name == name).map_or_else(
                || defender_core::schema::sentinel_name(&name),
                |c| {
                    if c.sentinel_name.is_empty() {
                        defender_core::schema::sentinel_name(&name)
                    } else {
                        c.sentinel_name.clone()
                    }
                },
            );
            (sentinel, defender_core::dcr::declared_type(ty).to_string())
        })
        .collect();
    types.insert(TIME_GENERATED.into(), "datetime".into());
    types.insert("RecordId_CF".into(), "string".into());
    defender_ingestion_server::StreamRules {
        plan: defender_ingestion_server::TablePlan::Auxiliary,
        types,
        transformed: false,
    }
}

/// `n` rows of [`batch`] whose `Timestamp`s spread over `hours`, out of order, and whose `_Extra`
/// holds a JSON object.
fn spread_batch(catalog: &Catalog, n: usize, hours: i64) -> TableBatch {
    let mut b = batch(catalog, n, 40, 0);
    let schema = b.batch.schema();
    let step = hours * 3_600_000_000_000 / n as i64;
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .zip(b.batch.columns())
        .map(|(f, c)| -> ArrayRef {
            match f.name().as_str() {
                "Timestamp" => Arc::new(
                    TimestampNanosecondArray::from_iter_values(
                        (0..n).map(|i| 1_763_634_600_000_000_000 + ((i * 7919) % n) as i64 * step),
                    )
                    .with_timezone("UTC"),
                ),
                "_Extra" => {
                    Arc::new(StringArray::from_iter_values((0..n).map(|i| format!(r#"{{"RemotePort":"-{i}"}}"#))))
                }
                _ => c.clone(),
            }
        })
        .collect();
    b.batch = RecordBatch::try_new(schema, columns).unwrap();
    b
}

#[tokio::test]
async fn an_auxiliary_table_gets_hours_of_rows_through_in_calls_the_service_accepts() {
    let catalog = Catalog::embedded();
    let rules = auxiliary_rules(&catalog, TABLE);
    let aux = rules.clone();
    let s = setup_with(
        move |c| {
            c.rules.insert(STREAM.into(), aux);
        },
        |c| *c = c.clone().with_plan(TABLE, defender_core::billing::Tier::Auxiliary),
    )
    .await;
    let b = spread_batch(&s.catalog, 3_000, 5);
    let delivered = s.sink.send(&b).await.unwrap();
    assert_eq!(delivered.sent.rows, 3_000);
    let (ids, rows) = accepted_ids(&s.server);
    assert_eq!((ids.len(), rows), (3_000, 3_000), "every row once");
    let requests = s.server.requests();
    assert!(requests.iter().all(|r| r.status == 204), "no call refused: {requests:?}");
    assert!(requests.len() >= 10, "5 hours in calls of under 30 minutes: {} calls", requests.len());
    let accepted = s.server.accepted(DCR, STREAM);
    assert!(accepted.iter().all(|r| r["Extra_CF"].is_string()), "JSON into a string column goes as text");

    // The same batch packed as for Analytics is what the service refuses for an Auxiliary table.
    let s = setup_with(
        move |c| {
            c.rules.insert(STREAM.into(), rules);
        },
        |_| {},
    )
    .await;
    let e = s.sink.send(&b).await.unwrap_err().to_string();
    assert!(e.contains("MalformedJson") || e.contains("RecordsTimeRangeIsMoreThan30Minutes"), "{e}");
}
