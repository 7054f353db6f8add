//! `subnode config`: desired state (PROTOCOL.md §15). `set` and `unset` change the document of
//! a node name or of one instance; `show` lists per instance what is desired, what it reported
//! and whether it is in sync.

use clap::Subcommand;
use serde_json::{Map, Value};
use subnodesync_engine::{
    check_key, printable, EngineConfig, InstanceState, Printable, Published, Selector, SettingValue, Settings, Target,
};

use crate::send::connect;
use crate::table::aligned;
use crate::{colour, stop, Failure};

/// `subnode config ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Set settings for every instance of a node name (NODE/*) or for one instance (INSTANCE_ID
    /// or NODE/INSTANCE_ID), whose settings override its name's.
    ///
    /// VALUE is read as JSON if it is a JSON scalar (42, true, null, "quoted"), else as text;
    /// objects and arrays are refused. The document is published retained, under a new version,
    /// and every instance applies it, also one started later.
    Set {
        /// NODE/*, INSTANCE_ID or NODE/INSTANCE_ID.
        target: String,
        /// The settings to add or replace.
        #[arg(required = true, value_name = "KEY=VALUE")]
        settings: Vec<String>,
        /// Print the published document as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove settings from the document of a node name (NODE/*) or of one instance.
    ///
    /// A setting removed from an instance's document falls back on its name's; one that leaves
    /// the merged document is no longer managed (the node keeps what it had).
    Unset {
        /// NODE/*, INSTANCE_ID or NODE/INSTANCE_ID.
        target: String,
        /// The keys to remove.
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
        /// Print the published document as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show per instance the desired settings (both documents merged), what it reported and
    /// whether it is in sync.
    ///
    /// Exit code 0 when every running (online or missing) instance shown is in sync, 1 when one
    /// drifts; a stopped instance catches up when it starts, and is shown without counting.
    Show {
        /// NODE/*, INSTANCE_ID, NODE/INSTANCE_ID or * (the default).
        target: Option<String>,
        /// Print JSON (an array of instances).
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `config` command.
pub(crate) async fn run(config: EngineConfig, command: ConfigCommand) -> Result<u8, Failure> {
    match command {
        ConfigCommand::Set { target, settings, json } => {
            let settings = settings.iter().map(|s| setting(s)).collect::<Result<Vec<_>, _>>()?;
            let target = Target::parse(&target);
            let engine = connect(config).await?;
            let published = engine.set_desired(&target, &settings).await;
            stop(&engine).await?;
            print_published(&published?, json);
            Ok(0)
        }
        ConfigCommand::Unset { target, keys, json } => {
            for key in &keys {
                check_key(key).map_err(|e| Failure(2, e.to_string()))?;
            }
            let target = Target::parse(&target);
            let engine = connect(config).await?;
            let published = engine.unset_desired(&target, &keys).await;
            stop(&engine).await?;
            print_published(&published?, json);
            Ok(0)
        }
        ConfigCommand::Show { target, json } => {
            let target = target.as_deref().map_or(Target::Select(Selector::default()), Target::parse);
            let engine = connect(config).await?;
            let states = engine.desired_state(&target);
            stop(&engine).await?;
            if json {
                println!("{}", Value::from(states.iter().map(InstanceState::to_json).collect::<Vec<_>>()));
            } else {
                print!("{}", show(&states, colour::on_stdout()));
            }
            Ok(u8::from(states.iter().any(|s| s.running() && !s.in_sync)))
        }
    }
}

/// `KEY=VALUE`, the value read as `SettingValue::from_cli` reads it; checked before anything
/// connects.
fn setting(text: &str) -> Result<(String, SettingValue), Failure> {
    let (key, value) = text.split_once('=').ok_or_else(|| Failure(2, format!("{text:?}: expected KEY=VALUE")))?;
    check_key(key).map_err(|e| Failure(2, e.to_string()))?;
    let value = SettingValue::from_cli(key, value).map_err(|e| Failure(2, e.to_string()))?;
    Ok((key.to_owned(), value))
}

/// `{"k":v,...}` of settings, values as sent.
fn settings_json(settings: &Settings) -> Value {
    Value::Object(settings.iter().map(|(k, v)| (k.clone(), v.to_value())).collect::<Map<_, _>>())
}

/// `k=v k2=v2`, each value as `Display` shows it, `*` after the keys in `marked`.
fn settings_text(settings: &Settings, marked: &Settings) -> String {
    let pairs: Vec<String> = settings
        .iter()
        .map(|(k, v)| format!("{}={v}{}", printable(k), if marked.contains_key(k) { "*" } else { "" }))
        .collect();
    if pairs.is_empty() {
        "-".into()
    } else {
        pairs.join(" ")
    }
}

fn print_published(p: &Published, json: bool) {
    if json {
        let value = serde_json::json!({
            "topic": p.topic,
            "node_name": p.node_name,
            "instance_id": p.instance_id,
            "version": p.document.version,
            "settings": settings_json(&p.document.settings),
        });
        println!("{value}");
    } else {
        let whose = p.instance_id.as_deref().map_or_else(|| format!("{}/*", p.node_name), str::to_owned);
        println!(
            "{}: version {}, {}",
            Printable(&whose),
            p.document.version,
            settings_text(&p.document.settings, &Settings::new())
        );
    }
}

/// The states as a table, then why each drifting instance drifts and a count.
fn show(states: &[InstanceState], coloured: bool) -> String {
    let header = ["INSTANCE", "NODE", "STATUS", "DESIRED", "REPORTED", "IN SYNC", "SETTINGS (* its own)"];
    let version = |v: u64| if v == 0 { "-".to_owned() } else { v.to_string() };
    let rows: Vec<Vec<String>> = states
        .iter()
        .map(|s| {
            vec![
                printable(&s.instance_id),
                printable(&s.node_name),
                s.status.map_or_else(|| "unregistered".into(), |st| st.to_string()),
                version(s.desired.version),
                s.reported.as_ref().map_or_else(|| "-".into(), |r| r.version.to_string()),
                if s.in_sync { "yes" } else { "NO" }.into(),
                settings_text(&s.desired.settings, &s.overrides),
            ]
        })
        .collect();
    let tint = |row: usize, column: usize| {
        let s = states.get(row).filter(|_| coloured && column == 5)?;
        Some(if s.in_sync { "\x1b[32m" } else { "\x1b[31m" })
    };
    let mut out = aligned(&header, &rows, tint);
    if states.is_empty() {
        out.push_str("(no instances)\n");
        return out;
    }
    for s in states.iter().filter(|s| !s.in_sync) {
        out.push_str(&format!("{}: {}\n", printable(&s.instance_id), drift(s)));
    }
    let drifting = states.iter().filter(|s| !s.in_sync).count();
    let running = states.iter().filter(|s| s.running() && !s.in_sync).count();
    out.push_str(&format!(
        "{} instance(s): {} in sync, {drifting} drifting ({running} of them running)\n",
        states.len(),
        states.len() - drifting
    ));
    out
}

/// Why an instance is not in sync, in words.
fn drift(s: &InstanceState) -> String {
    let Some(r) = &s.reported else {
        return format!("no report yet (desired version {})", s.desired.version);
    };
    let mut why = Vec::new();
    if r.version != s.desired.version {
        why.push(format!("applied version {}, desired {}", r.version, s.desired.version));
    }
    for (key, reason) in &r.rejected {
        why.push(format!("rejected {}: {}", printable(key), printable(reason)));
    }
    if let Some(error) = &r.error {
        why.push(format!("error: {}", printable(error)));
    }
    why.join("; ")
}
