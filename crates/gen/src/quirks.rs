//! Realistic quirks (the record still decodes) and breakage (the record must be dead-lettered),
//! applied to an assembled [`Record`]. The dead-letter reasons are the decoder's
//! ([`defender_core::DeadLetterReason`]); which one a broken record earns is decided here and
//! reported to the ledger.

use defender_core::{Catalog, ColumnType, DeadLetterReason, schema::CATEGORY_PREFIX};
use rand::{Rng, rngs::SmallRng};

use crate::{
    json::{TimeStyle, guid, push_hex},
    record::{EnvVal, Prop, Record},
    scenario::public_ip,
    world::{World, pick},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quirk {
    NumberAsString,
    EmptyNumber,
    DashNumber,
    ObjectInString,
    DynamicAsText,
    ExtraColumn,
    MissingColumn,
    ShuffleEnvelope,
    TenantKey,
    UnknownEnvelopeKey,
    ShortTimestamp,
    OffsetTimestamp,
    BoolAsString,
    BadTimestamp,
}

const QUIRKS: &[Quirk] = &[
    Quirk::NumberAsString,
    Quirk::NumberAsString,
    Quirk::EmptyNumber,
    Quirk::DashNumber,
    Quirk::ObjectInString,
    Quirk::DynamicAsText,
    Quirk::ExtraColumn,
    Quirk::ExtraColumn,
    Quirk::MissingColumn,
    Quirk::ShuffleEnvelope,
    Quirk::TenantKey,
    Quirk::TenantKey,
    Quirk::UnknownEnvelopeKey,
    Quirk::ShortTimestamp,
    Quirk::OffsetTimestamp,
    Quirk::BoolAsString,
    Quirk::BadTimestamp,
];

/// Categories of tables the catalog may not know (new Defender tables), with a few columns.
const UNKNOWN_TABLES: &[(&str, &[(&str, ColumnType)])] = &[
    (
        "CloudStorageAggregatedEvents",
        &[
            ("Timestamp", ColumnType::Datetime),
            ("StorageAccount", ColumnType::String),
            ("OperationNamesList", ColumnType::Dynamic),
            ("IPAddress", ColumnType::String),
            ("Count", ColumnType::Long),
            ("AccountUpn", ColumnType::String),
        ],
    ),
    (
        "MessageEvents",
        &[
            ("Timestamp", ColumnType::Datetime),
            ("TeamsMessageId", ColumnType::String),
            ("SenderEmailAddress", ColumnType::String),
            ("RecipientDetails", ColumnType::Dynamic),
            ("Subject", ColumnType::String),
            ("ThreatTypes", ColumnType::String),
            ("IsExternalThread", ColumnType::Bool),
        ],
    ),
    (
        "MessagePostDeliveryEvents",
        &[
            ("Timestamp", ColumnType::Datetime),
            ("TeamsMessageId", ColumnType::String),
            ("Action", ColumnType::String),
            ("ActionResult", ColumnType::String),
        ],
    ),
    (
        "CloudAuditEvents",
        &[
            ("Timestamp", ColumnType::Datetime),
            ("ActionType", ColumnType::String),
            ("OperationName", ColumnType::String),
            ("ResourceId", ColumnType::String),
            ("IPAddress", ColumnType::String),
            ("RawEventData", ColumnType::Dynamic),
        ],
    ),
];

/// Applies one or more quirks. Returns the ledger table name when the record was turned into
/// one of a table the catalog does not know.
pub(crate) fn apply(rec: &mut Record<'_>, catalog: &Catalog, world: &World, rng: &mut SmallRng) -> Option<String> {
    if rng.random_bool(0.08)
        && let Some(name) = unknown_table(rec, catalog, world, rng)
    {
        return Some(name);
    }
    let mut applied = 0;
    for _ in 0..20 {
        if one(rec, pick(rng, QUIRKS), rng) {
            applied += 1;
            if applied == 3 || rng.random_bool(0.6) {
                break;
            }
        }
    }
    if applied == 0 {
        one(rec, Quirk::TenantKey, rng);
    }
    None
}

fn numeric(ty: Option<ColumnType>) -> bool {
    matches!(ty, Some(ColumnType::Long | ColumnType::Int | ColumnType::Real))
}

/// Index of a random property matching `f` (ports first: the real-world favourite).
fn choose(rec: &Record<'_>, rng: &mut SmallRng, f: impl Fn(&Prop<'_>, &str) -> bool) -> Option<usize> {
    let hits: Vec<usize> = (0..rec.props.len()).filter(|&i| f(&rec.props[i], rec.text(&rec.props[i].val))).collect();
    let port = hits.iter().copied().find(|&i| rec.props[i].name.ends_with("Port"));
    match port {
        Some(i) if rng.random_bool(0.5) => Some(i),
        _ if hits.is_empty() => None,
        _ => Some(hits[rng.random_range(0..hits.len())]),
    }
}

fn one(rec: &mut Record<'_>, q: Quirk, rng: &mut SmallRng) -> bool {
    match q {
        Quirk::NumberAsString => {
            let Some(i) = choose(rec, rng, |p, t| numeric(p.ty) && t.parse::<f64>().is_ok()) else { return false };
            let text = format!("\"{}\"", rec.text(&rec.props[i].val));
            rec.props[i].val = rec.add(&text);
        }
        Quirk::EmptyNumber | Quirk::DashNumber => {
            let Some(i) = choose(rec, rng, |p, _| matches!(p.ty, Some(ColumnType::Long | ColumnType::Int))) else {
                return false;
            };
            rec.props[i].val = rec.add(if q == Quirk::EmptyNumber { "\"\"" } else { "\"-\"" });
        }
        Quirk::ObjectInString => {
            // A string column that holds JSON text arrives as the JSON itself.
            let Some(i) = choose(rec, rng, |p, t| {
                p.ty == Some(ColumnType::String) && (t.starts_with("\"{") || t.starts_with("\"["))
            }) else {
                return false;
            };
            let Ok(inner) = serde_json::from_str::<String>(rec.text(&rec.props[i].val)) else { return false };
            if serde_json::from_str::<serde_json::Value>(&inner).is_err() {
                return false;
            }
            rec.props[i].val = rec.add(&inner);
        }
        Quirk::DynamicAsText => {
            let Some(i) = choose(rec, rng, |p, t| {
                p.ty == Some(ColumnType::Dynamic) && (t.starts_with('{') || t.starts_with('['))
            }) else {
                return false;
            };
            let text = rec.text(&rec.props[i].val).to_string();
            rec.props[i].val = rec.add_str(&text);
        }
        Quirk::ExtraColumn => {
            let (name, json) = match rng.random_range(0..4) {
                0 => ("NewColumn2027", "\"x\"".to_string()),
                1 => ("IsPreviewFeature", "true".to_string()),
                2 => ("ProcessCommandLineHash", {
                    let mut s = String::from("\"");
                    push_hex(&mut s, rng.random(), 64);
                    s.push('"');
                    s
                }),
                _ => (
                    "AdditionalFieldsV2",
                    format!("{{\"SchemaVersion\":2,\"CorrelationId\":\"{}\"}}", guid(rng.random())),
                ),
            };
            if rec.prop_index(name).is_some() {
                return false;
            }
            let val = rec.add(&json);
            let at = rng.random_range(0..=rec.props.len());
            rec.props.insert(at, Prop { name, ty: None, val });
        }
        Quirk::MissingColumn => {
            let Some(i) = choose(rec, rng, |p, _| p.name != "Timestamp") else { return false };
            rec.props.remove(i);
        }
        Quirk::ShuffleEnvelope => {
            let before = rec.env.clone();
            while rec.env == before {
                for i in (1..rec.env.len()).rev() {
                    rec.env.swap(i, rng.random_range(0..=i));
                }
            }
        }
        Quirk::TenantKey | Quirk::UnknownEnvelopeKey => {
            let (key, json) = if q == Quirk::TenantKey {
                ("Tenant", "\"DefaultTenant\"".to_string())
            } else {
                match rng.random_range(0..3) {
                    0 => ("resourceId", "\"/tenants/providers/Microsoft.SecurityInsights\"".to_string()),
                    1 => ("Region", format!("\"{}\"", pick(rng, &["westeurope", "eastus", "uksouth"]))),
                    _ => ("_ItemId", format!("\"{}\"", guid(rng.random()))),
                }
            };
            if rec.env_index(key).is_some() {
                return false;
            }
            let val = rec.add(&json);
            let at = rng.random_range(0..=rec.env.len());
            rec.env.insert(at, (key, EnvVal::Json(val)));
        }
        Quirk::ShortTimestamp | Quirk::OffsetTimestamp | Quirk::BadTimestamp => {
            let Some(i) = rec.prop_index("Timestamp") else { return false };
            let ts = rec.ts;
            rec.props[i].val = match q {
                Quirk::ShortTimestamp => rec.add_time(ts, TimeStyle::Millis),
                Quirk::OffsetTimestamp => rec.add_time(ts, TimeStyle::Offset),
                _ => {
                    let bad =
                        pick(rng, &["\"11/20/2026 10:15:31 AM\"", "\"\"", "\"-\"", "null", "\"0001-00-00T00:00:00Z\""]);
                    rec.add(bad)
                }
            };
        }
        Quirk::BoolAsString => {
            let Some(i) = choose(rec, rng, |p, t| p.ty == Some(ColumnType::Bool) && (t == "true" || t == "false"))
            else {
                return false;
            };
            let text = format!("\"{}\"", rec.text(&rec.props[i].val));
            rec.props[i].val = rec.add(&text);
        }
    }
    true
}

/// Replaces the record by one of a table the catalog does not know.
fn unknown_table(rec: &mut Record<'_>, catalog: &Catalog, world: &World, rng: &mut SmallRng) -> Option<String> {
    let candidates: Vec<_> = UNKNOWN_TABLES.iter().filter(|(t, _)| catalog.get(t).is_none()).collect();
    if candidates.is_empty() {
        return None;
    }
    let (table, columns) = *candidates[rng.random_range(0..candidates.len())];
    let ts = rec.ts;
    rec.clear();
    rec.ts = ts;
    let user = world.pick_user(rng);
    for &(name, ty) in columns {
        let val = match (name, ty) {
            ("Timestamp", _) => rec.add_time(ts, TimeStyle::Ticks),
            (_, ColumnType::Long) => rec.add(&rng.random_range(1..500).to_string()),
            (_, ColumnType::Bool) => rec.add(if rng.random_bool(0.2) { "true" } else { "false" }),
            ("RecipientDetails", _) => rec.add(&format!(
                "[{{\"RecipientEmailAddress\":\"{}\",\"RecipientObjectId\":\"{}\"}}]",
                user.upn, user.object_id
            )),
            ("OperationNamesList", _) => rec.add("[\"GetBlob\",\"ListBlobs\"]"),
            ("RawEventData", _) => rec.add(&format!("{{\"caller\":\"{}\",\"level\":\"Information\"}}", user.upn)),
            ("IPAddress", _) => rec.add_str(&public_ip(rng)),
            ("AccountUpn" | "SenderEmailAddress", _) => rec.add_str(&user.upn),
            ("TeamsMessageId", _) => {
                rec.add_str(&rng.random_range(1_700_000_000_000u64..1_800_000_000_000).to_string())
            }
            ("StorageAccount", _) => rec.add_str(pick(rng, &["contosodata01", "contosobackup", "stfinance"])),
            ("Subject", _) => rec.add_str(pick(rng, &["Quick question", "Invoice overdue", "Meeting moved"])),
            ("ThreatTypes", _) => rec.add_str(pick(rng, &["", "", "Phish"])),
            ("Action" | "ActionType" | "OperationName", _) => {
                rec.add_str(pick(rng, &["Soft delete", "Microsoft.Storage/storageAccounts/write", "Block"]))
            }
            ("ActionResult", _) => rec.add_str("Success"),
            _ => rec.add_str(""),
        };
        rec.props.push(Prop { name, ty: Some(ty), val });
    }
    rec.envelope(world, &format!("{CATEGORY_PREFIX}{table}"), ts, rng);
    Some(table.to_string())
}

/// Breaks a record so that the decoder must dead-letter it with the returned reason. `table`
/// is the record's table. Reasons that need the whole line (malformed JSON, not a message) and
/// `not_an_object` are produced by the caller.
pub(crate) fn break_record(rec: &mut Record<'_>, reason: DeadLetterReason, rng: &mut SmallRng) {
    match reason {
        DeadLetterReason::MissingCategory => {
            let i = rec.env_index("category").expect("records have a category");
            if rng.random_bool(0.7) {
                rec.env.remove(i);
            } else {
                rec.env[i].1 = EnvVal::Json(rec.add(if rng.random_bool(0.5) { "null" } else { "7" }));
            }
        }
        DeadLetterReason::MissingProperties => {
            let i = rec.env_index("properties").expect("records have properties");
            match rng.random_range(0..3) {
                0 => rec.env[i].1 = EnvVal::Json(rec.add("null")),
                1 => {
                    // Properties sent as JSON text: not an object either.
                    let mut text = String::new();
                    rec.serialize(&mut text);
                    let val = rec.add_str(&text[..floor_char_boundary(&text, 200)]);
                    rec.env[i].1 = EnvVal::Json(val);
                }
                _ => {
                    rec.env.remove(i);
                }
            }
        }
        DeadLetterReason::NoTimestamp => {
            if let Some(i) = rec.prop_index("Timestamp") {
                if rng.random_bool(0.5) {
                    rec.props.remove(i);
                } else {
                    rec.props[i].val = rec.add("\"not a time\"");
                }
            }
            let i = rec.env_index("time").expect("records have a time");
            if rng.random_bool(0.7) {
                rec.env.remove(i);
            } else {
                rec.env[i].1 = EnvVal::Json(rec.add("\"\""));
            }
        }
        _ => unreachable!("line-level reasons are produced by the caller"),
    }
}

/// The largest index `<= at` that is a char boundary of `s`.
pub(crate) fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
