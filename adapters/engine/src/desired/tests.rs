use proptest::prelude::*;

use super::store::{DocTopic, Store};
use super::*;
use crate::registry::{Registry, Status};
use crate::target::{Selector, Target};

/// PROTOCOL.md §15.1's example.
const DESIRED: &str = r#"{"version":1764676800000,"timestamp":"2026-12-02T12:00:00Z","settings":{"heartbeat_interval":10,"log_level":"debug"}}"#;
/// PROTOCOL.md §15.3's example.
const REPORTED: &str = r#"{"timestamp":"2026-12-02T12:00:01Z","node_name":"my-app","instance_id":"my-app-server01-12345","version":1764676800000,"settings":{"heartbeat_interval":10},"rejected":{"log_level":"unknown setting"},"error":null}"#;

fn doc(version: u64, settings: &[(&str, &str)]) -> DesiredDocument {
    let settings = settings.iter().map(|(k, v)| ((*k).to_owned(), SettingValue::parse(k, v).unwrap())).collect();
    DesiredDocument { version, timestamp: None, settings }
}

fn report(version: u64) -> ReportedDocument {
    ReportedDocument {
        timestamp: String::new(),
        version,
        settings: Settings::new(),
        rejected: BTreeMap::new(),
        error: None,
    }
}

#[test]
fn the_protocols_desired_document_reads_and_writes_back_byte_for_byte() {
    let d = DesiredDocument::parse(DESIRED.as_bytes()).unwrap();
    assert_eq!(d.version, 1_764_676_800_000);
    assert_eq!(d.timestamp.as_deref(), Some("2026-12-02T12:00:00Z"));
    assert_eq!(d.settings["heartbeat_interval"].as_json(), "10");
    assert_eq!(d.settings["log_level"].to_string(), "debug");
    assert_eq!(d.to_json(), DESIRED);
}

#[test]
fn a_document_breaking_the_contract_gets_its_own_error() {
    let long_key = "k".repeat(KEY_MAX + 1);
    let long_value = format!(r#""{}""#, "v".repeat(VALUE_MAX - 1));
    let many: Vec<String> = (0..=MAX_SETTINGS).map(|n| format!(r#""k{n}":{n}"#)).collect();
    let cases: Vec<(String, DesiredError)> = vec![
        ("not json".into(), DesiredError::Json(JsonError::Syntax(0))),
        ("[1]".into(), DesiredError::Json(JsonError::NotAnObject)),
        (r#"{"settings":{}}"#.into(), DesiredError::Missing("version")),
        (r#"{"version":1}"#.into(), DesiredError::Missing("settings")),
        (r#"{"version":0,"settings":{}}"#.into(), DesiredError::Version),
        (format!(r#"{{"version":{},"settings":{{}}}}"#, VERSION_MAX + 1), DesiredError::Version),
        (r#"{"version":"1","settings":{}}"#.into(), DesiredError::Version),
        (r#"{"version":1.5,"settings":{}}"#.into(), DesiredError::Version),
        (r#"{"version":-1,"settings":{}}"#.into(), DesiredError::Version),
        (r#"{"version":1,"settings":[]}"#.into(), DesiredError::WrongType("settings")),
        (r#"{"version":1,"timestamp":5,"settings":{}}"#.into(), DesiredError::WrongType("timestamp")),
        (r#"{"version":1,"settings":{"a":{"b":1}}}"#.into(), DesiredError::Nested("a".into())),
        (r#"{"version":1,"settings":{"a":[1]}}"#.into(), DesiredError::Nested("a".into())),
        (r#"{"version":1,"settings":{"a/b":1}}"#.into(), DesiredError::BadKey("a/b".into())),
        (r#"{"version":1,"settings":{"":1}}"#.into(), DesiredError::BadKey(String::new())),
        (r#"{"version":1,"settings":{"\u0061":1}}"#.into(), DesiredError::BadKey(r"\u0061".into())),
        (format!(r#"{{"version":1,"settings":{{"{long_key}":1}}}}"#), DesiredError::BadKey(long_key)),
        (r#"{"version":1,"settings":{"a":1,"a":2}}"#.into(), DesiredError::RepeatedKey("a".into())),
        (r#"{"version":1,"version":2,"settings":{}}"#.into(), DesiredError::RepeatedField("version")),
        (r#"{"version":1,"versio\u006e":2,"settings":{}}"#.into(), DesiredError::RepeatedField("version")),
        (format!(r#"{{"version":1,"settings":{{"a":{long_value}}}}}"#), DesiredError::ValueTooLong("a".into())),
        (format!(r#"{{"version":1,"settings":{{{}}}}}"#, many.join(",")), DesiredError::TooManySettings(33)),
    ];
    for (payload, expected) in cases {
        assert_eq!(DesiredDocument::parse(payload.as_bytes()), Err(expected), "{payload}");
    }
    // At the limits, and with what a reader ignores: unknown fields, no timestamp.
    let at_limits = format!(r#"{{"version":{VERSION_MAX},"x":[],"settings":{{"a":"{}"}}}}"#, "v".repeat(126));
    let d = DesiredDocument::parse(at_limits.as_bytes()).unwrap();
    assert_eq!((d.version, d.timestamp, d.settings["a"].as_json().len()), (VERSION_MAX, None, VALUE_MAX));
}

#[test]
fn the_protocols_report_reads_and_must_name_its_own_topic() {
    let r = ReportedDocument::parse(REPORTED.as_bytes(), "my-app", "my-app-server01-12345").unwrap();
    assert_eq!((r.version, r.error.as_deref()), (1_764_676_800_000, None));
    assert_eq!(r.settings["heartbeat_interval"].as_json(), "10");
    assert_eq!(r.rejected["log_level"], "unknown setting");
    assert_eq!(
        ReportedDocument::parse(REPORTED.as_bytes(), "my-app", "my-app-other-1"),
        Err(DesiredError::TopicMismatch)
    );
    let failing = REPORTED.replace(r#""error":null"#, r#""error":"name: `version` is missing""#);
    let r = ReportedDocument::parse(failing.as_bytes(), "my-app", "my-app-server01-12345").unwrap();
    assert_eq!(r.error.as_deref(), Some("name: `version` is missing"));
    let bad = REPORTED.replace(r#""rejected":{"log_level":"unknown setting"}"#, r#""rejected":{"log_level":1}"#);
    assert_eq!(
        ReportedDocument::parse(bad.as_bytes(), "my-app", "my-app-server01-12345"),
        Err(DesiredError::WrongType("rejected"))
    );
    // Nothing desired yet: version 0.
    let none = r#"{"node_name":"a","instance_id":"a-h-1","version":0,"settings":{},"rejected":{},"error":null}"#;
    assert_eq!(ReportedDocument::parse(none.as_bytes(), "a", "a-h-1"), Ok(report(0)));
}

#[test]
fn the_instance_document_overrides_the_name_document_key_by_key_and_the_greater_version_wins() {
    let name = doc(100, &[("heartbeat_interval", "10"), ("log_level", r#""info""#)]);
    let instance = doc(50, &[("log_level", r#""debug""#), ("extra", "true")]);
    let merged = merge(Some(&name), Some(&instance));
    assert_eq!(merged.version, 100);
    let shown: Vec<(&str, &str)> = merged.settings.iter().map(|(k, v)| (k.as_str(), v.as_json())).collect();
    assert_eq!(shown, [("extra", "true"), ("heartbeat_interval", "10"), ("log_level", r#""debug""#)]);
    assert_eq!(merge(None, Some(&instance)).version, 50);
    assert_eq!(merge(None, None), Merged::default());
}

#[test]
fn in_sync_wants_the_merged_version_nothing_rejected_and_no_error() {
    assert!(in_sync(7, Some(&report(7))));
    assert!(!in_sync(8, Some(&report(7))));
    let rejected = ReportedDocument { rejected: [("x".into(), "unknown setting".into())].into(), ..report(7) };
    assert!(!in_sync(7, Some(&rejected)));
    let failed = ReportedDocument { error: Some("instance: not json".into()), ..report(7) };
    assert!(!in_sync(7, Some(&failed)));
    // Without a report: in sync only if nothing is desired.
    assert!(in_sync(0, None));
    assert!(!in_sync(7, None));
}

#[test]
fn the_next_version_is_the_clock_or_one_past_the_highest_known() {
    assert_eq!(next_version(1_000, 5), Ok(1_000));
    assert_eq!(next_version(1_000, 5_000), Ok(5_001));
    assert_eq!(next_version(-1, 0), Ok(1));
    assert_eq!(next_version(0, VERSION_MAX), Err(DesiredError::VersionsExhausted));
}

#[test]
fn a_cli_value_is_a_json_scalar_if_it_reads_as_one_else_a_string() {
    let value = |text: &str| SettingValue::from_cli("k", text).map(|v| v.as_json().to_owned());
    assert_eq!(value("42").as_deref(), Ok("42"));
    assert_eq!(value("true").as_deref(), Ok("true"));
    assert_eq!(value("null").as_deref(), Ok("null"));
    assert_eq!(value("debug").as_deref(), Ok(r#""debug""#));
    assert_eq!(value(r#""42""#).as_deref(), Ok(r#""42""#));
    assert_eq!(value("a \"b\"").as_deref(), Ok(r#""a \"b\"""#));
    assert_eq!(value("{}"), Err(DesiredError::Nested("k".into())));
    assert_eq!(value("[1, 2]"), Err(DesiredError::Nested("k".into())));
    assert_eq!(value(&"x".repeat(VALUE_MAX)), Err(DesiredError::ValueTooLong("k".into())));
    assert_eq!(SettingValue::from_cli("k", "tab\there").unwrap().to_string(), r"tab\u{9}here");
}

#[test]
fn a_pair_of_documents_must_fit_in_a_node() {
    let wide = |prefix: &str| -> Vec<(String, String)> {
        (0..20).map(|n| (format!("{prefix}{n}"), format!(r#""{}""#, "v".repeat(80)))).collect()
    };
    let as_doc =
        |pairs: &[(String, String)]| doc(1, &pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>());
    let (a, b) = (as_doc(&wide("a")), as_doc(&wide("b")));
    assert_eq!(check_fits(Some(&a), None), Ok(()));
    assert_eq!(check_fits(Some(&a), Some(&b)), Err(DesiredError::TooManySettings(40)));
    // Overriding the same keys keeps the merge at 20, but both documents still travel.
    assert!(matches!(check_fits(Some(&a), Some(&a)), Err(DesiredError::TooLarge(n)) if n > DOCUMENTS_MAX));
}

#[test]
fn desired_state_topics_split_and_nothing_else_does() {
    assert_eq!(DocTopic::split("p/q", "p/q/app/desired"), Some(DocTopic::Name("app")));
    assert_eq!(DocTopic::split("p", "p/app/app-h-1/desired"), Some(DocTopic::Instance("app", "app-h-1")));
    assert_eq!(DocTopic::split("p", "p/app/app-h-1/reported"), Some(DocTopic::Reported("app", "app-h-1")));
    for other in ["p/app/app-h-1/register", "p/app/control", "p//desired", "p/app//desired", "p/a/b/c/desired"] {
        assert_eq!(DocTopic::split("p", other), None, "{other}");
    }
    assert_eq!(DocTopic::Instance("app", "app-h-1").topic("p"), "p/app/app-h-1/desired");
}

/// A store with the §15 examples in it: a name document for `my-app` and a report from one of
/// its instances.
fn example_store() -> Store {
    let mut store = Store::new(10);
    store.ingest(DocTopic::Name("my-app"), DESIRED.as_bytes()).unwrap();
    let instance = DocTopic::Reported("my-app", "my-app-server01-12345");
    store.ingest(instance, REPORTED.as_bytes()).unwrap();
    store
}

#[test]
fn a_bad_document_changes_nothing_and_an_empty_one_deletes() {
    let mut store = example_store();
    assert_eq!(store.ingest(DocTopic::Name("my-app"), b"{oops"), Err(DesiredError::Json(JsonError::Syntax(1))));
    assert_eq!(store.name_document("my-app").map(|d| d.version), Some(1_764_676_800_000));
    store.ingest(DocTopic::Name("my-app"), b"").unwrap();
    assert_eq!(store.name_document("my-app"), None);
    // A deleted document's version still counts: the next one must pass it.
    assert_eq!(store.highest("my-app"), 1_764_676_800_000);
    store.ingest(DocTopic::Reported("my-app", "my-app-server01-12345"), b"").unwrap();
    assert_eq!(store.node_of("my-app-server01-12345"), None);
}

#[test]
fn documents_about_another_names_instances_are_refused_and_the_store_stays_bounded() {
    let mut store = example_store();
    let foreign = DocTopic::Reported("evil", "my-app-server01-12345");
    assert_eq!(store.ingest(foreign, REPORTED.as_bytes()), Err(DesiredError::ForeignInstance));
    let claimed = DocTopic::Instance("my-app-server01", "my-app-server01-12345");
    assert_eq!(store.ingest(claimed, DESIRED.as_bytes()), Err(DesiredError::ForeignInstance));
    for n in 0..20 {
        let name = format!("n{n}");
        let ingested = store.ingest(DocTopic::Name(&name), DESIRED.as_bytes());
        assert_eq!(ingested.is_err(), n >= 9, "{n}: {ingested:?}");
    }
    assert_eq!(store.ingest(DocTopic::Name(&"n".repeat(49)), DESIRED.as_bytes()), Err(DesiredError::TooLong));
}

#[test]
fn states_list_registered_instances_and_those_only_a_report_knows() {
    let mut store = example_store();
    let override_doc = r#"{"version":5,"settings":{"log_level":"warn"}}"#;
    store.ingest(DocTopic::Instance("my-app", "my-app-h-2"), override_doc.as_bytes()).unwrap();
    let mut registry = Registry::default();
    let status =
        r#"{"timestamp":"2024-01-01T12:00:00Z","node_name":"my-app","instance_id":"my-app-h-2","status":"online"}"#;
    registry.ingest("p", "p/my-app/my-app-h-2/status", status.as_bytes(), 0, false).unwrap();

    let all = store.states(&registry, &Target::Select(Selector::default()));
    let ids: Vec<&str> = all.iter().map(|s| s.instance_id.as_str()).collect();
    assert_eq!(ids, ["my-app-h-2", "my-app-server01-12345"]);
    let (h2, server01) = (&all[0], &all[1]);
    assert_eq!((h2.status, h2.in_sync, h2.running()), (Some(Status::Online), false, true));
    assert_eq!((h2.name_version, h2.instance_version), (Some(1_764_676_800_000), Some(5)));
    assert_eq!(h2.desired.settings["log_level"].to_string(), "warn");
    assert_eq!(h2.overrides.keys().collect::<Vec<_>>(), ["log_level"]);
    // The report's version is the merged one, but it rejected a setting.
    assert_eq!((server01.status, server01.in_sync, server01.running()), (None, false, true));
    assert_eq!(server01.to_json()["reported"]["rejected"]["log_level"], "unknown setting");

    let one = store.states(&registry, &Target::parse("my-app-h-2"));
    assert_eq!(one.len(), 1);
    assert!(store.states(&registry, &Target::Node("other".into())).is_empty());
    store.forget(["my-app-h-2", "my-app-server01-12345"]);
    assert_eq!(store.states(&registry, &Target::parse("my-app/*"))[0].instance_version, None);
}

/// A valid key: 1 to 32 bytes of what `check_key` takes.
fn key() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.:;=?@ !#$%'()*+,^`{|}~-]{1,32}"
}

/// A valid value's JSON text.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("null".to_owned()),
        Just("1.5e3".to_owned()),
        "[ -~é\t\n]{0,40}".prop_map(|s| Value::from(s).to_string()),
    ]
}

fn document() -> impl Strategy<Value = DesiredDocument> {
    (
        1..=VERSION_MAX,
        proptest::option::of("[ -~]{0,30}"),
        proptest::collection::btree_map(key(), value(), 0..MAX_SETTINGS),
    )
        .prop_map(|(version, timestamp, settings)| DesiredDocument {
            version,
            timestamp,
            settings: settings.into_iter().map(|(k, v)| (k, SettingValue(v))).collect(),
        })
}

proptest! {
    #[test]
    fn every_document_the_engine_writes_reads_back_the_same(d in document()) {
        prop_assert_eq!(DesiredDocument::parse(d.to_json().as_bytes()), Ok(d));
    }

    #[test]
    fn arbitrary_bytes_are_refused_or_read_and_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = DesiredDocument::parse(&bytes);
        let _ = ReportedDocument::parse(&bytes, "a", "a-h-1");
    }

    #[test]
    fn the_merge_takes_every_instance_setting_and_the_rest_of_the_names(
        name in proptest::option::of(document()),
        instance in proptest::option::of(document()),
    ) {
        let merged = merge(name.as_ref(), instance.as_ref());
        let version = |d: &Option<DesiredDocument>| d.as_ref().map_or(0, |d| d.version);
        prop_assert_eq!(merged.version, version(&name).max(version(&instance)));
        for (k, v) in &merged.settings {
            let from_instance = instance.as_ref().and_then(|d| d.settings.get(k));
            let expected = from_instance.or_else(|| name.as_ref().and_then(|d| d.settings.get(k)));
            prop_assert_eq!(Some(v), expected);
        }
        let keys = |d: &Option<DesiredDocument>| d.as_ref().map_or(0, |d| d.settings.len());
        prop_assert!(merged.settings.len() >= keys(&name).max(keys(&instance)));
    }

    /// Hostile traffic on every desired-state topic leaves the store within its bounds, and
    /// the highest version known for a name never goes down.
    #[test]
    fn any_sequence_of_messages_keeps_the_store_bounded_and_versions_monotonic(
        messages in proptest::collection::vec(
            (0..3u8, 0..4u8, prop_oneof![Just(Vec::new()), document().prop_map(|d| d.to_json().into_bytes()),
                proptest::collection::vec(any::<u8>(), 0..60)]),
            0..40,
        ),
    ) {
        let mut store = Store::new(3);
        let mut highest = 0;
        for (kind, n, payload) in messages {
            let (node, instance) = (format!("a{}", n % 2), format!("a{}-h-{n}", n % 2));
            let topic = match kind {
                0 => DocTopic::Name(&node),
                1 => DocTopic::Instance(&node, &instance),
                _ => DocTopic::Reported(&node, &instance),
            };
            let _ = store.ingest(topic, &payload);
            prop_assert!(store.highest("a0") >= highest);
            highest = store.highest("a0");
        }
        let registry = Registry::default();
        prop_assert!(store.states(&registry, &Target::Select(Selector::default())).len() <= 6);
    }
}
