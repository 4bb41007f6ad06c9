//! The start position of a partition receiver: Event Hubs' selector filter
//! (`apache.org:selector-filter:string`, descriptor `0x0000_468C_0000_0004`), the SQL-like
//! expressions both SDKs build:
//!
//! - Rust (`azure_messaging_eventhubs` 0.15 `consumer/mod.rs`, `StartPosition::start_expression`):
//!   `amqp.annotation.x-opt-offset > '-1'` (earliest), `> '@latest'`, and
//!   `amqp.annotation.x-opt-{offset,sequence-number,enqueued-time} {>,>=}'V'` (no space before the
//!   quote; enqueued time in ms since the epoch);
//! - Python (`azure-eventhub` 5.15 `_utils.py`, `event_position_selector`): the same with a
//!   space, sent as UTF-8 bytes.
//!
//! Anything else is refused (the service answers `amqp:invalid-field` or similar); without a
//! filter the service starts at the end of the partition, as `@latest`.

/// The annotation a start position compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Offset,
    SequenceNumber,
    EnqueuedTime,
}

/// Where a receiver starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    Earliest,
    Latest,
    After { field: Field, value: i64, inclusive: bool },
}

/// The descriptor code of the selector filter.
pub const SELECTOR_FILTER_CODE: u64 = 0x0000_468C_0000_0004;
/// The descriptor name of the selector filter (and the filter set's key).
pub const SELECTOR_FILTER_NAME: &str = "apache.org:selector-filter:string";

/// Parses a selector expression.
pub fn parse(expr: &str) -> Result<StartPosition, String> {
    let bad = || format!("unsupported selector filter expression: {expr}");
    let rest = expr.trim().strip_prefix("amqp.annotation.").ok_or_else(bad)?;
    let (field, rest) = [
        ("x-opt-offset", Field::Offset),
        ("x-opt-sequence-number", Field::SequenceNumber),
        ("x-opt-enqueued-time", Field::EnqueuedTime),
    ]
    .into_iter()
    .find_map(|(name, field)| rest.strip_prefix(name).map(|r| (field, r)))
    .ok_or_else(bad)?;
    let rest = rest.trim_start();
    let (inclusive, rest) = if let Some(r) = rest.strip_prefix(">=") {
        (true, r)
    } else if let Some(r) = rest.strip_prefix('>') {
        (false, r)
    } else {
        return Err(bad());
    };
    let value = rest.trim().strip_prefix('\'').and_then(|r| r.strip_suffix('\'')).ok_or_else(bad)?;
    match (field, value) {
        (Field::Offset, "-1") => Ok(StartPosition::Earliest),
        (Field::Offset, "@latest") => Ok(StartPosition::Latest),
        (field, v) => {
            let value: i64 = v.parse().map_err(|_| bad())?;
            Ok(StartPosition::After { field, value, inclusive })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_sdks_send() {
        assert_eq!(parse("amqp.annotation.x-opt-offset > '-1'"), Ok(StartPosition::Earliest));
        assert_eq!(parse("amqp.annotation.x-opt-offset >= '-1'"), Ok(StartPosition::Earliest));
        assert_eq!(parse("amqp.annotation.x-opt-offset > '@latest'"), Ok(StartPosition::Latest));
        assert_eq!(
            parse("amqp.annotation.x-opt-sequence-number >='12'"),
            Ok(StartPosition::After { field: Field::SequenceNumber, value: 12, inclusive: true })
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-offset >'345'"),
            Ok(StartPosition::After { field: Field::Offset, value: 345, inclusive: false })
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-enqueued-time > '1700000000000'"),
            Ok(StartPosition::After { field: Field::EnqueuedTime, value: 1_700_000_000_000, inclusive: false })
        );
        assert!(parse("amqp.annotation.x-opt-offset < '5'").is_err());
        assert!(parse("amqp.annotation.x-opt-offset > 'abc'").is_err());
        assert!(parse("x-opt-offset > '1'").is_err());
    }
}
