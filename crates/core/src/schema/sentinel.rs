//! The one rule that turns a column name into a valid Sentinel (Log Analytics custom table)
//! column name.
//!
//! Log Analytics column names start with a letter, hold at most 45 letters, digits and `_`, and
//! may not be one of the reserved names. The rule: **a name that is reserved (compared without
//! case) or starts with `_` loses its leading underscores and gains the suffix `_CF`**; every
//! other name is kept. So `TenantId` → `TenantId_CF`, `Type` → `Type_CF`, `_Extra` →
//! `Extra_CF`, `_RecordId` → `RecordId_CF`, `DeviceName` → `DeviceName`. `TimeGenerated` is
//! reserved here too because every row gets its own `TimeGenerated`.

/// Names Log Analytics reserves for itself (compared case-insensitively), plus `TimeGenerated`,
/// which we set on every row.
pub const RESERVED_SENTINEL_NAMES: &[&str] =
    &["TenantId", "Type", "id", "_ResourceId", "_SubscriptionId", "UniqueId", "Title", "TimeGenerated"];

/// Longest column name Log Analytics accepts.
pub const MAX_SENTINEL_NAME_LEN: usize = 45;

/// Most columns a Log Analytics table holds.
pub const MAX_SENTINEL_COLUMNS: usize = 500;

/// Applies the rule described in the module documentation.
pub fn sentinel_name(name: &str) -> String {
    let stripped = name.trim_start_matches('_');
    let reserved = RESERVED_SENTINEL_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name));
    if reserved || stripped.len() != name.len() { format!("{stripped}_CF") } else { name.to_string() }
}

/// Why `name` is not a valid Sentinel column name, if it is not.
pub fn invalid_sentinel_name(name: &str) -> Option<&'static str> {
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        Some("does not start with a letter")
    } else if name.len() > MAX_SENTINEL_NAME_LEN {
        Some("is longer than 45 characters")
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Some("holds a character other than a letter, digit or underscore")
    } else if RESERVED_SENTINEL_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        Some("is reserved by Log Analytics")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_reserved_and_internal_names_by_one_rule() {
        assert_eq!(sentinel_name("TenantId"), "TenantId_CF");
        assert_eq!(sentinel_name("type"), "type_CF");
        assert_eq!(sentinel_name("_Extra"), "Extra_CF");
        assert_eq!(sentinel_name("_RecordId"), "RecordId_CF");
        assert_eq!(sentinel_name("_ResourceId"), "ResourceId_CF");
        assert_eq!(sentinel_name("DeviceName"), "DeviceName");
        for n in ["TenantId", "_Extra", "Title", "_TimeReceivedBySvc", "TimeGenerated"] {
            assert_eq!(invalid_sentinel_name(&sentinel_name(n)), None, "{n}");
        }
    }

    #[test]
    fn rejects_invalid_names_with_a_reason() {
        assert_eq!(invalid_sentinel_name("_x"), Some("does not start with a letter"));
        assert_eq!(invalid_sentinel_name(&"a".repeat(46)), Some("is longer than 45 characters"));
        assert_eq!(invalid_sentinel_name("a-b"), Some("holds a character other than a letter, digit or underscore"));
        assert_eq!(invalid_sentinel_name("Id"), Some("is reserved by Log Analytics"));
        assert_eq!(invalid_sentinel_name("a".repeat(45).as_str()), None);
    }
}
