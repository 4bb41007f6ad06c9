use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray, new_null_array,
};
use arrow_schema::{Field, Schema};
use proptest::prelude::*;

use super::*;
use crate::schema::{Catalog, timestamp_type};

const H: i64 = 3_600_000_000_000;

fn t0() -> i64 {
    parse_datetime("2026-11-20T10:00:00Z").unwrap()
}

fn cols() -> Vec<(String, ColumnType)> {
    [
        ("S", ColumnType::String),
        ("N", ColumnType::Long),
        ("I", ColumnType::Int),
        ("R", ColumnType::Real),
        ("B", ColumnType::Bool),
        ("T", ColumnType::Datetime),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), t))
    .collect()
}

/// Five rows; row 2 is null in every column, row 1 holds the empty string.
fn batch() -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![Some("abc"), Some(""), None, Some("ABC"), Some("powershell.exe -enc abc")])),
        Arc::new(Int64Array::from(vec![Some(1), Some(80), None, Some(443), Some(-5)])),
        Arc::new(Int32Array::from(vec![Some(1), Some(80), None, Some(443), Some(-5)])),
        Arc::new(Float64Array::from(vec![Some(1.5), Some(80.0), None, Some(443.0), Some(-5.0)])),
        Arc::new(BooleanArray::from(vec![Some(true), Some(false), None, Some(true), Some(false)])),
        Arc::new(
            TimestampNanosecondArray::from(vec![Some(t0()), Some(t0() + H), None, Some(t0() + 2 * H), Some(t0() - H)])
                .with_timezone("UTC"),
        ),
    ];
    let fields: Vec<Field> =
        cols().iter().zip(&columns).map(|((n, _), a)| Field::new(n, a.data_type().clone(), true)).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

fn filter(text: &str) -> Filter {
    parse(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .check_columns(&cols())
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn mask(text: &str) -> Vec<bool> {
    let m = filter(text).row_mask(&batch()).unwrap();
    assert_eq!(m.null_count(), 0);
    m.iter().map(|v| v.unwrap()).collect()
}

/// Asserts the kept rows, written as a 5-character string of `x` (kept) and `.` (dropped).
#[track_caller]
fn rows(text: &str, expected: &str) {
    let got: String = mask(text).iter().map(|k| if *k { 'x' } else { '.' }).collect();
    assert_eq!(got, expected, "{text}");
}

fn table_rows(cases: &[(&str, &str)]) {
    for (pred, expected) in cases {
        rows(&format!("where {pred}"), expected);
    }
}

// Rows of S: "abc", "", null, "ABC", "powershell.exe -enc abc".

#[test]
fn string_equality_treats_null_as_empty() {
    table_rows(&[
        (r#"S == "abc""#, "x...."),
        (r#"S == """#, ".xx.."),
        (r#"S != "abc""#, ".xxxx"),
        (r#"S =~ "abc""#, "x..x."),
        (r#"S !~ "abc""#, ".xx.x"),
        (r#"S < "b""#, "xxxx."),
        (r#"S >= "b""#, "....x"),
    ]);
}

#[test]
fn string_term_and_substring_operators() {
    table_rows(&[
        (r#"S has "abc""#, "x..xx"),
        (r#"S has_cs "abc""#, "x...x"),
        (r#"S !has "abc""#, ".xx.."),
        (r#"S has "powershell""#, "....x"),
        (r#"S has "power""#, "....."),
        (r#"S contains "b""#, "x..xx"),
        (r#"S contains_cs "B""#, "...x."),
        (r#"S !contains "x""#, "xxxx."),
        (r#"S startswith "AB""#, "x..x."),
        (r#"S !startswith "AB""#, ".xx.x"),
        (r#"S endswith "bc""#, "x..xx"),
        (r#"S !endswith "bc""#, ".xx.."),
        (r#"S startswith """#, "xxxxx"),
        (r#"S has_any ("enc", "zzz")"#, "....x"),
        (r#"S has_any ("ABC")"#, "x..xx"),
        (r#"S matches regex "^[a-z]+$""#, "x...."),
        (r#"S matches regex "^$""#, ".xx.."),
    ]);
}

#[test]
fn string_set_operators() {
    table_rows(&[
        (r#"S in ("abc", "")"#, "xxx.."),
        (r#"S in~ ("abc")"#, "x..x."),
        (r#"S !in ("abc")"#, ".xxxx"),
        (r#"S !in~ ("ABC", "")"#, "....x"),
    ]);
}

#[test]
fn string_functions_never_see_null() {
    table_rows(&[
        ("isempty(S)", ".xx.."),
        ("isnotempty(S)", "x..xx"),
        ("isnull(S)", "....."),
        ("isnotnull(S)", "xxxxx"),
    ]);
}

#[test]
fn has_matches_whole_terms_only() {
    use super::eval::has_term;
    let cmd = "powershell.exe -enc abc";
    assert!(has_term(cmd, "powershell"));
    assert!(!has_term(cmd, "power"));
    assert!(has_term(cmd, "powershell.exe"));
    assert!(has_term(cmd, "exe -enc"));
    assert!(has_term(cmd, ".exe"));
    assert!(!has_term(cmd, "shell.exe"));
    assert!(!has_term("", "x"));
    assert!(has_term("xa.a.a", "a.a"), "a later overlapping occurrence is found");
    assert!(!has_term("aaa", "aa"));
    rows(r#"where S has "POWERSHELL.EXE""#, "....x");
    rows(r#"where S has "exe -enc""#, "....x");
    rows(r#"where S has_cs "POWERSHELL""#, ".....");
}

// Rows of N, I, R: 1, 80, null, 443, -5 (R: 1.5 in row 0).

#[test]
fn number_comparisons_with_null_are_false() {
    table_rows(&[
        ("N == 80", ".x..."),
        ("N != 80", "x..xx"),
        ("not(N == 80)", "x..xx"),
        ("N < 80", "x...x"),
        ("N >= 80", ".x.x."),
        ("N in (80, 443)", ".x.x."),
        ("N !in (80, 443)", "x...x"),
        ("N between (1 .. 80)", "xx..."),
        ("N between (-5 .. 0)", "....x"),
        ("N == 80.0", ".x..."),
        ("N > 1.5", ".x.x."),
        ("I == 80", ".x..."),
        ("I <= -5", "....x"),
        ("I == 5000000000", "....."),
        ("I < 5000000000", "xx.xx"),
        ("I > 0.5", "xx.x."),
        ("R == 80", ".x..."),
        ("R between (1 .. 80)", "xx..."),
        ("R in (1.5, 443)", "x..x."),
        ("isnull(N)", "..x.."),
        ("isnotnull(N)", "xx.xx"),
        ("isempty(R)", "..x.."),
        ("isnotempty(I)", "xx.xx"),
    ]);
}

#[test]
fn logic_is_kleene_and_where_drops_null_at_the_end() {
    table_rows(&[
        // Row 2: null or true = true.
        (r#"N == 80 or S == """#, ".xx.."),
        // Row 2: null and true = null, dropped.
        (r#"N == 80 and S == """#, ".x..."),
        // Row 2: not(null and false) = not(false) = true, kept.
        (r#"not(N == 1 and S == "x")"#, "xxxxx"),
        // Row 2: not(null) = null, dropped.
        (r#"not(N == 1)"#, ".x.xx"),
        // and binds tighter than or: N == 1 or (N == 443 and S == "x").
        (r#"N == 1 or N == 443 and S == "x""#, "x...."),
        (r#"(N == 1 or N == 443) and S =~ "abc""#, "x..x."),
    ]);
    rows(r#"where N > 0 | where S has "abc""#, "x..x.");
}

#[test]
fn bool_and_datetime_columns() {
    // T: t0, t0+1h, null, t0+2h, t0-1h with t0 = 2026-11-20T10:00:00Z.
    table_rows(&[
        ("B == true", "x..x."),
        ("B != true", ".x..x"),
        ("B in (false)", ".x..x"),
        ("isnull(B)", "..x.."),
        ("T == datetime(2026-11-20T10:00:00Z)", "x...."),
        ("T > datetime(2026-11-20T10:00:00Z)", ".x.x."),
        (r#"T between (datetime(2026-11-20 09:00) .. datetime("2026-11-20T10:30:00Z"))"#, "x...x"),
        ("T <= datetime(2026-11-20T12:00:00+02:00)", "x...x"),
        ("isnull(T)", "..x.."),
    ]);
}

#[test]
fn parse_errors_say_where_and_what() {
    let cases: &[(&str, usize, usize, &str)] = &[
        ("source\n| where RemotePort =! 80", 2, 20, "unknown operator `=!`"),
        ("source\n| project\n| where A == 1", 3, 1, "expected a column name after `project`, found `|`"),
        ("where (A == 1\n  or B == 2", 2, 12, "expected `)`, found the end of the text"),
        ("source\n| where B == 1\n| where A == 'abc", 3, 14, "unterminated string"),
        ("where A in 1, 2)", 1, 12, "expected `(` after `in`, found a number"),
        (
            "where A ==\n datetime(2026-13-01)",
            2,
            2,
            "invalid datetime `2026-13-01` (expected e.g. `2026-11-20T10:00:00Z`)",
        ),
        ("sauce | where A == 1", 1, 1, "expected `where`, `project` or `project-away`, found `sauce`"),
        ("where A == 1 B == 2", 1, 14, "expected `|` or the end of the text, found `B`"),
        ("where A ==", 1, 11, "expected a literal value, found the end of the text"),
        ("where A* == 1", 1, 7, "wildcards are only allowed in `project` and `project-away`: `A*`"),
        ("where A foo 1", 1, 9, "unknown operator `foo`"),
        ("where A = 1", 1, 9, "unknown operator `=` (use `==`)"),
        ("where A == \"a\\qb\"", 1, 14, "unknown escape `\\q`"),
        ("where R > 1e400", 1, 11, "real literal out of range"),
        ("where N == 99999999999999999999", 1, 12, "integer literal out of range"),
        ("where isempty(S", 1, 16, "expected `)`, found the end of the text"),
        ("where S matches 'x'", 1, 17, "expected `regex` after `matches`"),
        ("project-away A,\n  , B", 2, 3, "expected a column name after `project-away`, found `,`"),
    ];
    for (text, line, column, message) in cases {
        let e = parse(text).unwrap_err();
        assert_eq!((e.line, e.column, e.message.as_str()), (*line, *column, *message), "{text:?}");
    }
    assert_eq!(parse("where A =! 1").unwrap_err().to_string(), "line 1, column 9: unknown operator `=!`");
}

#[test]
fn source_alone_or_nothing_is_the_identity() {
    for text in ["", "source", "  source  ", "\n"] {
        let p = parse(text).unwrap();
        assert!(p.stages.is_empty());
        assert_eq!(p.to_kql(), "source");
        assert!(p.check_columns(&cols()).unwrap().is_identity());
    }
    assert_eq!(parse("source | where N == 1").unwrap(), parse("where N == 1").unwrap());
    assert!(!filter("project-away S").is_identity());
}

fn network() -> Arc<TableSchema> {
    Catalog::embedded().get("DeviceNetworkEvents").unwrap().clone()
}

#[test]
fn check_errors_name_the_column_and_the_problem() {
    let table = network();
    let cases: &[(&str, usize, usize, &str)] = &[
        ("where remoteport == 80", 1, 7, "unknown column `remoteport` (did you mean `RemotePort`?)"),
        ("where RemotPort == 80", 1, 7, "unknown column `RemotPort` (did you mean `RemotePort`?)"),
        ("where Nonsense == 1", 1, 7, "unknown column `Nonsense`"),
        ("where ActionType == 1", 1, 21, "cannot compare string column `ActionType` with a number"),
        ("where ActionType in (\"a\", 2)", 1, 27, "cannot compare string column `ActionType` with a number"),
        ("where RemotePort == \"80\"", 1, 21, "cannot compare number column `RemotePort` with a string"),
        ("where RemotePort has \"80\"", 1, 7, "`has` needs a string column, but `RemotePort` is a number column"),
        (
            "where Timestamp startswith \"2026\"",
            1,
            7,
            "`startswith` needs a string column, but `Timestamp` is a datetime column",
        ),
        (
            "where ActionType between (1 .. 2)",
            1,
            7,
            "`between` needs a number or datetime column, but `ActionType` is a string column",
        ),
        ("project Foo*", 1, 9, "`Foo*` matches no column"),
        ("project-away Bar*", 1, 14, "`Bar*` matches no column"),
        ("project ActionType, Nope", 1, 21, "unknown column `Nope`"),
        ("where Timestamp > 5", 1, 19, "cannot compare datetime column `Timestamp` with a number"),
        ("where Timestamp > \"2026-01-01\"", 1, 19, "cannot compare datetime column `Timestamp` with a string"),
        ("where RemotePort > datetime(2026-01-01)", 1, 20, "cannot compare number column `RemotePort` with a datetime"),
        ("project-away RemotePort | where RemotePort == 1", 1, 33, "unknown column `RemotePort`"),
        ("where RemotePort =~ 80", 1, 7, "`=~` cannot be used on number column `RemotePort`"),
        (
            "where IsInitiatingProcessRemoteSession > true",
            1,
            7,
            "`>` cannot be used on bool column `IsInitiatingProcessRemoteSession`",
        ),
    ];
    for (text, line, column, message) in cases {
        let e = parse(text).unwrap().check(&table).unwrap_err();
        assert_eq!((e.line, e.column, e.message.as_str()), (*line, *column, *message), "{text:?}");
    }
    let e = parse("where ActionType matches regex \"(\"").unwrap().check(&table).unwrap_err();
    assert!(e.message.starts_with("invalid regular expression"), "{e}");
    assert!(e.to_string().starts_with("line 1, column 32: "), "{e}");
}

#[test]
fn internal_columns_are_known() {
    let cols = table_columns(&network());
    assert_eq!(cols.len(), 50);
    assert_eq!(cols[46], ("_EnvelopeTime".to_string(), ColumnType::Datetime));
    let text = "where _EnvelopeTime > datetime(2026-01-01) and _Extra has 'x' and _EnvelopeTenantId == 't' \
                and isnotnull(_TimeReceivedBySvc)";
    parse(text).unwrap().check(&network()).unwrap();
}

#[test]
fn device_network_events_example_keeps_the_stated_rows() {
    let table = network();
    let schema = table.arrow_schema();
    let action = [
        Some("ConnectionSuccess"),
        Some("ConnectionSuccess"),
        Some("ConnectionFailed"),
        Some("ConnectionSuccess"),
        None,
        Some("connectionsuccess"),
    ];
    let port = [Some(443), Some(22), Some(80), None, Some(80), Some(80)];
    let n = action.len();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "Timestamp" => Arc::new(TimestampNanosecondArray::from(vec![t0(); n]).with_timezone("UTC")),
                "ActionType" => Arc::new(StringArray::from(action.to_vec())),
                "RemotePort" => Arc::new(Int32Array::from(port.to_vec())),
                "DeviceId" => Arc::new(StringArray::from((0..n).map(|i| format!("d{i}")).collect::<Vec<_>>())),
                _ => new_null_array(f.data_type(), n),
            }
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let text =
        r#"where not(ActionType == "ConnectionSuccess" and RemotePort in (80, 443)) | project-away AdditionalFields"#;
    let filter = parse(text).unwrap().check(&table).unwrap();
    // 0: success/443 dropped; 1: success/22 kept; 2: failed kept; 3: success/null port: not(null)
    // dropped; 4: null ActionType reads as "" so kept; 5: `==` is case-sensitive so kept.
    let kept = filter.row_mask(&batch).unwrap();
    assert_eq!(kept, BooleanArray::from(vec![false, true, true, false, true, true]));
    let out = filter.apply(&batch).unwrap();
    assert_eq!(out.num_rows(), 4);
    assert_eq!(out.num_columns(), 50, "the table's columns, the decoder's five (with _RecordId), less one");
    assert!(out.schema().field_with_name("AdditionalFields").is_err());
    let ids = out.column_by_name("DeviceId").unwrap();
    let ids: Vec<&str> = ids.as_any().downcast_ref::<StringArray>().unwrap().iter().map(|v| v.unwrap()).collect();
    assert_eq!(ids, ["d1", "d2", "d4", "d5"]);
    assert_eq!(out.schema().field(0).data_type(), &timestamp_type());
}

#[test]
fn project_orders_by_list_and_project_away_keeps_input_order() {
    let columns: Vec<(String, ColumnType)> =
        ["A", "InitB", "InitA", "C"].iter().map(|n| (n.to_string(), ColumnType::String)).collect();
    let input = ["A", "InitB", "InitA", "C"];
    let out = |text: &str| parse(text).unwrap().check_columns(&columns).unwrap().output_columns(&input);
    assert_eq!(out("project C, Init*, A"), ["C", "InitB", "InitA", "A"]);
    assert_eq!(out("project A, A, *A"), ["A", "InitA"]);
    assert_eq!(out("project-away Init*"), ["A", "C"]);
    assert_eq!(out("project-away *"), Vec::<String>::new());
    assert_eq!(out("project C, InitA, A | project-away A"), ["C", "InitA"]);
    assert_eq!(out("project C, A | where C has 'x'"), ["C", "A"]);
    assert_eq!(out("where A == ''"), input);

    let b = filter("project N, S | where N > 0").apply(&batch()).unwrap();
    let names: Vec<&str> = b.schema_ref().fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["N", "S"]);
    assert_eq!(b.num_rows(), 3, "N is 1, 80, null, 443, -5");
}

#[test]
fn to_kql_prints_canonical_text() {
    let p = parse("where N == 1 and (S == 'x' or isempty(S)) | project-away\n S").unwrap();
    assert_eq!(p.to_kql(), r#"source | where N == 1 and (S == "x" or isempty(S)) | project-away S"#);
    let p = parse("source | where T >= datetime(2026-11-20) and R > -1.5 | project Init*, A").unwrap();
    assert_eq!(p.to_kql(), "source | where T >= datetime(2026-11-20T00:00:00Z) and R > -1.5 | project Init*, A");
}

#[test]
fn to_kql_round_trips() {
    let texts = [
        "",
        "where A == 1",
        r#"source | where (A == 1 or B has 'x') and not(C in~ ('a', "b")) | project X, Init* | project-away Y"#,
        "where A == 1 or (B == 2 or C == 3) or D == 4",
        "where A == 1 and (B == 2 and C == 3)",
        "where (A == 1 or B == 2) and (C == 3 or D == 4)",
        "where T between (datetime(2026-11-20T10:00:00.1234567Z) .. datetime(2026-11-21))",
        r#"where S matches regex @"\d+\.exe""" and S !has "a\"b\\c\n""#,
        "where R > -1.5e-7 and N != -3 and R < 1e300 and R == 80.0",
        "where B == true or B != false | where isnotnull(X) and isnotempty(Y) and not(isnull(Z))",
        r#"where S !in ("a", "") and S !in~ ("b") and S has_any ("x", "y") and S =~ "k" and S !~ "j""#,
        r#"where S has_cs "a" and S contains "b" and S !contains "c" and S contains_cs "d""#,
        r#"where S startswith "a" and S !startswith "b" and S endswith "c" and S !endswith "d""#,
        "where N between (-5 .. 5) and N < 1 and N <= 2 and N > 3 and N >= 4",
    ];
    for text in texts {
        let p = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let printed = p.to_kql();
        let again = parse(&printed).unwrap_or_else(|e| panic!("{printed}: {e}"));
        assert_eq!(again, p, "{text} -> {printed}");
        assert_eq!(again.to_kql(), printed);
    }
}

const VOCAB: &[&str] = &[
    "source",
    "|",
    "where",
    "project",
    "project-away",
    "and",
    "or",
    "not",
    "(",
    ")",
    ",",
    "..",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "=~",
    "!~",
    "=",
    "=!",
    "has",
    "!has",
    "has_cs",
    "contains",
    "in",
    "!in",
    "in~",
    "!in~",
    "has_any",
    "matches",
    "regex",
    "between",
    "isempty",
    "isnull",
    "datetime",
    "datetime(",
    "datetime(2026-11-20)",
    "\"a\"",
    "'b",
    "@\"c\"\"",
    "\"\\",
    "1",
    "-",
    "1.5e",
    "2.5",
    "true",
    "A",
    "B*",
    "*",
    "_Extra",
    "é",
    "@",
    "\n",
    "!",
    "~",
    "\"",
    "9999999999999999999999",
];

proptest! {
    #[test]
    fn random_token_sequences_never_panic_the_parser(
        tokens in proptest::collection::vec(proptest::sample::select(VOCAB), 0..24),
        glue in proptest::collection::vec(proptest::bool::ANY, 24),
    ) {
        let mut text = String::new();
        for (i, t) in tokens.iter().enumerate() {
            text.push_str(t);
            if glue[i] {
                text.push(' ');
            }
        }
        if let Ok(p) = parse(&text) {
            let _ = p.check_columns(&cols());
            let printed = p.to_kql();
            prop_assert_eq!(parse(&printed).map_err(|e| e.to_string()), Ok(p));
        }
    }

    #[test]
    fn has_of_one_term_equals_term_membership(hay in "[a-c .-]{0,12}", needle in "[a-c]{1,3}") {
        let terms: Vec<&str> = hay.split(|c: char| !c.is_ascii_alphanumeric()).collect();
        prop_assert_eq!(super::eval::has_term(&hay, &needle), terms.contains(&needle.as_str()));
    }

    #[test]
    fn arbitrary_text_never_panics_the_parser(text in "\\PC{0,40}") {
        let _ = parse(&text);
    }

    #[test]
    fn string_literals_round_trip(s in "\\PC{0,20}") {
        let p = Pipeline { stages: vec![Stage::Where(Expr::Str {
            col: Name { name: "S".into(), pos: Pos::default() },
            op: StrOp::Has,
            value: Lit { value: Value::Str(s), pos: Pos::default() },
        })] };
        prop_assert_eq!(parse(&p.to_kql()), Ok(p));
    }
}

#[test]
fn evaluation_handles_null_slots_with_non_empty_payload() {
    // A null slot whose offsets span bytes must still read as "".
    let strings = StringArray::new(
        arrow_buffer::OffsetBuffer::new(vec![0, 3, 6].into()),
        arrow_buffer::Buffer::from("abcxyz".as_bytes()),
        Some(arrow_buffer::NullBuffer::from(vec![true, false])),
    );
    let schema = Arc::new(Schema::new(vec![Field::new("S", arrow_schema::DataType::Utf8, true)]));
    let b = RecordBatch::try_new(schema, vec![Arc::new(strings)]).unwrap();
    let f = parse("where S == '' or S has 'xyz'").unwrap().check_columns(&[("S".into(), ColumnType::String)]).unwrap();
    assert_eq!(f.row_mask(&b).unwrap(), BooleanArray::from(vec![false, true]));
}
