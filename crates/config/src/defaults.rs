//! Every default of the file, in one place. A default that a library type already has (the
//! pipeline's, the archive's, the Kafka source's, the Entra client's) is read from that type, so
//! each value is written once: change it there and the config follows.

use defender_core::FlushRule;
use defender_pipeline::PipelineOptions;
use defender_sinks::{ArchiveConfig, sentinel::auth::DEFAULT_AUTHORITY_HOST};
use defender_sources::{KafkaConfig, eventhubs::defaults as eventhubs};

use crate::file::Seconds;

const MIB: usize = 1 << 20;

fn archive() -> ArchiveConfig {
    ArchiveConfig::default()
}

fn pipeline() -> PipelineOptions {
    PipelineOptions::default()
}

/// The Kafka source's defaults (its settings other than where it connects).
fn kafka() -> KafkaConfig {
    KafkaConfig::new("", Vec::new(), "")
}

pub fn roll_size_mb() -> u64 {
    (archive().roll_bytes / MIB) as u64
}
pub fn roll_seconds() -> Seconds {
    Seconds::from_duration(archive().roll_age)
}
pub fn max_buffered_mb() -> u64 {
    (archive().max_buffered_bytes / MIB) as u64
}
pub fn zstd_level() -> i32 {
    archive().zstd_level
}
pub fn flush_rows() -> usize {
    FlushRule::default().max_rows
}
pub fn flush_mb() -> usize {
    FlushRule::default().max_bytes / MIB
}
pub fn flush_seconds() -> Seconds {
    Seconds::from_duration(FlushRule::default().max_age)
}
pub fn budget_mb() -> usize {
    pipeline().budget_bytes / MIB
}
pub fn max_unknown_tables() -> usize {
    pipeline().max_unknown_tables
}
/// One per core.
pub fn cpu_workers() -> usize {
    pipeline().cpu_workers
}
pub fn sentinel_in_flight() -> usize {
    pipeline().sentinel_in_flight
}
pub fn client_secret_env() -> String {
    "AZURE_CLIENT_SECRET".to_string()
}
pub fn group() -> String {
    "defender-ingest".to_string()
}
/// Where a partition without a committed offset starts (the Kafka source's default,
/// `StartPosition::Earliest`, by the name the file gives it).
pub fn start() -> String {
    "earliest".to_string()
}
pub fn commit_interval_ms() -> u64 {
    kafka().commit_interval.as_millis() as u64
}
pub fn session_timeout_ms() -> u64 {
    kafka().session_timeout.as_millis() as u64
}
pub fn revoke_timeout_seconds() -> u64 {
    kafka().revoke_timeout.as_secs()
}
pub fn shutdown_grace_seconds() -> u64 {
    kafka().shutdown_grace.as_secs()
}
pub fn liveness_threshold_seconds() -> u64 {
    300
}
pub fn authority_host() -> String {
    DEFAULT_AUTHORITY_HOST.to_string()
}
pub fn consumer_group() -> String {
    eventhubs::CONSUMER_GROUP.to_string()
}
pub fn prefetch() -> u32 {
    eventhubs::PREFETCH
}
pub fn load_balancing_interval_seconds() -> u64 {
    eventhubs::LOAD_BALANCING_INTERVAL.as_secs()
}
pub fn partition_expiration_seconds() -> u64 {
    eventhubs::PARTITION_EXPIRATION.as_secs()
}
pub fn eventhubs_checkpoint_interval_ms() -> u64 {
    eventhubs::CHECKPOINT_INTERVAL.as_millis() as u64
}
