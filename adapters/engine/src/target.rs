//! Who a command goes to: one instance, every instance of a name, or a filtered set.

use crate::error::{Error, FilterError};
use crate::registry::{Instance, Registry, Status};

/// Which instances a command goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One instance. Without `node_name` the registry supplies it.
    Instance {
        /// Its application name, if known to the caller.
        node_name: Option<String>,
        /// Its instance id.
        instance_id: String,
    },
    /// Every instance of an application, through the broadcast control topic.
    Node(String),
    /// The registry's instances that match, each sent on its own control topic.
    Select(Selector),
}

impl Target {
    /// Reads the CLI's target syntax: `node/*` (broadcast), `node/instance_id`, `*` (every
    /// reachable instance) or a bare `instance_id`.
    pub fn parse(text: &str) -> Self {
        match text.split_once('/') {
            _ if text == "*" => Self::Select(Selector::default()),
            Some((node, "*")) => Self::Node(node.to_owned()),
            Some((node, id)) => Self::Instance { node_name: Some(node.to_owned()), instance_id: id.to_owned() },
            None => Self::Instance { node_name: None, instance_id: text.to_owned() },
        }
    }

    /// How history shows the target: as the CLI takes it, or the selector's settings.
    pub(crate) fn describe(&self, prefix: &str) -> String {
        match self {
            Target::Instance { node_name: Some(n), instance_id } => format!("{n}/{instance_id}"),
            Target::Instance { node_name: None, instance_id } => instance_id.clone(),
            Target::Node(n) => format!("{n}/*"),
            Target::Select(s) => {
                let mut parts = vec![];
                for (k, v) in [("node", &s.node_name), ("version", &s.version), ("host", &s.hostname)] {
                    if let Some(v) = v {
                        parts.push(format!("{k}={v}"));
                    }
                }
                if let Some(st) = s.status {
                    parts.push(format!("status={st}"));
                }
                if parts.is_empty() {
                    format!("{prefix}: *")
                } else {
                    parts.join(",")
                }
            }
        }
    }

    /// The control topics to publish on and the instances expected to answer.
    pub(crate) fn resolve(&self, registry: &Registry, prefix: &str) -> Result<(Vec<String>, Vec<String>), Error> {
        match self {
            Target::Instance { node_name, instance_id } => {
                topic_level(instance_id)?;
                let node = match node_name {
                    Some(n) => n.clone(),
                    None => registry
                        .get(instance_id)
                        .map(|i| i.node_name.clone())
                        .ok_or_else(|| Error::UnknownInstance(instance_id.clone()))?,
                };
                topic_level(&node)?;
                Ok((vec![format!("{prefix}/{node}/{instance_id}/control")], vec![instance_id.clone()]))
            }
            Target::Node(node) => {
                topic_level(node)?;
                let selector = Selector { node_name: Some(node.clone()), ..Selector::default() };
                let expected =
                    registry.instances().iter().filter(|i| selector.matches(i)).map(|i| i.instance_id.clone());
                Ok((vec![format!("{prefix}/{node}/control")], expected.collect()))
            }
            Target::Select(selector) => {
                let chosen: Vec<&Instance> = registry.instances().iter().filter(|i| selector.matches(i)).collect();
                if chosen.is_empty() {
                    return Err(Error::NoTargets);
                }
                Ok((
                    chosen.iter().map(|i| format!("{prefix}/{}/{}/control", i.node_name, i.instance_id)).collect(),
                    chosen.iter().map(|i| i.instance_id.clone()).collect(),
                ))
            }
        }
    }
}

/// Refuses a name that cannot be one level of a topic: empty, or holding `/`, `+` or `#` (an
/// MQTT client refuses to publish there, and a broker would read a filter).
pub(crate) fn topic_level(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.contains(['/', '+', '#', '\0']) {
        return Err(Error::InvalidTarget(format!("{name:?} cannot name a node or an instance")));
    }
    Ok(())
}

/// A filter over the registry; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// Application name.
    pub node_name: Option<String>,
    /// Application version.
    pub version: Option<String>,
    /// Host name.
    pub hostname: Option<String>,
    /// Status; by default `online` and `missing` (the instances that may answer).
    pub status: Option<Status>,
}

impl Selector {
    /// Whether a command to the selection goes to `i`: without a status, only to the instances
    /// that may answer.
    pub fn matches(&self, i: &Instance) -> bool {
        (self.status.is_some() || matches!(i.status, Status::Online | Status::Missing)) && self.lists(i)
    }

    /// Whether a listing of the registry shows `i`: every field set matches, and without a
    /// status any status does, so the instances that went away can be listed too.
    pub fn lists(&self, i: &Instance) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        self.status.is_none_or(|s| s == i.status)
            && eq(&self.node_name, &i.node_name)
            && eq(&self.version, &i.version)
            && eq(&self.hostname, &i.hostname)
    }

    /// Narrows the selection by one `KEY=VALUE` filter, as `--where` takes it; see
    /// [`Selector::set_field`] for the keys.
    pub fn add_filter(&mut self, filter: &str) -> Result<(), FilterError> {
        let (key, value) = filter.split_once('=').ok_or_else(|| FilterError::NotKeyValue(filter.to_owned()))?;
        self.set_field(key, value)
    }

    /// Narrows the selection to `value` for `key`: `node`, `version`, `host` (or `hostname`) or
    /// `status`; a key given again replaces its value.
    pub fn set_field(&mut self, key: &str, value: &str) -> Result<(), FilterError> {
        match key {
            "node" => self.node_name = Some(value.to_owned()),
            "version" => self.version = Some(value.to_owned()),
            "host" | "hostname" => self.hostname = Some(value.to_owned()),
            "status" => {
                self.status = Some(Status::parse(value).ok_or_else(|| FilterError::UnknownStatus(value.to_owned()))?);
            }
            _ => return Err(FilterError::UnknownKey(key.to_owned())),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn targets_read_as_the_cli_writes_them() {
        let instance = |node: Option<&str>, id: &str| Target::Instance {
            node_name: node.map(str::to_owned),
            instance_id: id.to_owned(),
        };
        assert_eq!(Target::parse("shop/*"), Target::Node("shop".into()));
        assert_eq!(Target::parse("shop/shop-h-1"), instance(Some("shop"), "shop-h-1"));
        assert_eq!(Target::parse("shop-h-1"), instance(None, "shop-h-1"));
        assert_eq!(Target::parse("*"), Target::Select(Selector::default()));
    }

    #[test]
    fn a_selector_takes_reachable_instances_unless_told_a_status() {
        let mut i = Registry::default();
        let hb = br#"{"timestamp":"2024-01-01T12:00:00Z","node_name":"a","instance_id":"a-h-1","status":"running","pid":1,"uptime":5,"version":"1.0","hostname":"h","metrics":{"process_cpu_usage_percent":"2.50","process_memory_usage_mb":128,"process_goroutine_count":4}}"#;
        i.ingest("p", "p/a/a-h-1/heartbeat", hb, 0, false).unwrap();
        let inst = i.get("a-h-1").unwrap().clone();
        assert!(Selector::default().matches(&inst));
        assert!(
            Selector { version: Some("1.0".into()), hostname: Some("h".into()), ..Selector::default() }.matches(&inst)
        );
        assert!(!Selector { version: Some("2.0".into()), ..Selector::default() }.matches(&inst));
        assert!(!Selector { status: Some(Status::Lost), ..Selector::default() }.matches(&inst));
        let lost = Instance { status: Status::Lost, ..inst };
        assert!(!Selector::default().matches(&lost));
        // A listing shows it all the same, unless told a status.
        assert!(Selector::default().lists(&lost));
        assert!(Selector { hostname: Some("h".into()), ..Selector::default() }.lists(&lost));
        assert!(!Selector { status: Some(Status::Online), ..Selector::default() }.lists(&lost));
    }

    #[test]
    fn filters_read_as_where_takes_them() {
        let mut selector = Selector::default();
        for filter in ["node=shop", "version=1.0=beta", "host=h1", "status=missing", "hostname=h2"] {
            selector.add_filter(filter).unwrap();
        }
        let expected = Selector {
            node_name: Some("shop".into()),
            // Only the first `=` splits: a value may hold more.
            version: Some("1.0=beta".into()),
            hostname: Some("h2".into()),
            status: Some(Status::Missing),
        };
        assert_eq!(selector, expected);
        assert_eq!(selector.add_filter("version"), Err(FilterError::NotKeyValue("version".into())));
        assert_eq!(selector.add_filter("colour=red"), Err(FilterError::UnknownKey("colour".into())));
        assert_eq!(selector.add_filter("status=asleep"), Err(FilterError::UnknownStatus("asleep".into())));
        assert_eq!(selector, expected, "a refused filter changes nothing");
        assert_eq!(FilterError::NotKeyValue("version".into()).to_string(), r#""version": expected KEY=VALUE"#);
        assert_eq!(
            FilterError::UnknownKey("colour".into()).to_string(),
            "colour: expected node, version, host or status"
        );
        assert_eq!(FilterError::UnknownStatus("asleep".into()).to_string(), "status=asleep: unknown status");
    }
}
