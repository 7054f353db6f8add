//! What the broker holds of desired state, as the engine last heard it: the retained desired
//! documents per node name and per instance, and every instance's retained report. Anyone may
//! publish on these topics, so every message is validated, and what a bad one would replace is
//! kept.

use std::collections::HashMap;

use serde_json::{json, Value};
use subnodesync_core::{INSTANCE_ID_MAX, NODE_NAME_MAX};

use super::{in_sync, merge, DesiredDocument, DesiredError, Merged, ReportedDocument, Settings};
use crate::registry::{belongs, Instance, Registry, Status};
use crate::target::Target;

/// A desired-state topic, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocTopic<'t> {
    /// `{prefix}/{node_name}/desired`.
    Name(&'t str),
    /// `{prefix}/{node_name}/{instance_id}/desired`.
    Instance(&'t str, &'t str),
    /// `{prefix}/{node_name}/{instance_id}/reported`.
    Reported(&'t str, &'t str),
}

impl<'t> DocTopic<'t> {
    /// Splits `topic` if it is one of the desired-state topics under `prefix`.
    pub(crate) fn split(prefix: &str, topic: &'t str) -> Option<Self> {
        let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
        let levels: Vec<&str> = rest.splitn(4, '/').collect();
        if levels.iter().any(|l| l.is_empty()) {
            return None;
        }
        match levels[..] {
            [node, "desired"] => Some(Self::Name(node)),
            [node, instance, "desired"] => Some(Self::Instance(node, instance)),
            [node, instance, "reported"] => Some(Self::Reported(node, instance)),
            _ => None,
        }
    }

    /// The topic under `prefix`.
    pub(crate) fn topic(&self, prefix: &str) -> String {
        match self {
            Self::Name(node) => format!("{prefix}/{node}/desired"),
            Self::Instance(node, instance) => format!("{prefix}/{node}/{instance}/desired"),
            Self::Reported(node, instance) => format!("{prefix}/{node}/{instance}/reported"),
        }
    }
}

/// A document about one instance, with the node name it was published under.
#[derive(Debug, Clone)]
struct Owned<T> {
    node_name: String,
    doc: T,
}

/// The documents the broker holds, as last heard.
#[derive(Debug, Default)]
pub(crate) struct Store {
    names: HashMap<String, DesiredDocument>,
    instances: HashMap<String, Owned<DesiredDocument>>,
    reports: HashMap<String, Owned<ReportedDocument>>,
    /// The highest version seen for each node name, in any document or report, deleted ones
    /// included: the next document must pass it.
    highest: HashMap<String, u64>,
    /// Most entries in each map (the engine's `max_instances`): hostile publishers cannot grow
    /// it without bound.
    pub(crate) limit: usize,
}

impl Store {
    /// An empty store keeping at most `limit` entries of each kind.
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit, ..Self::default() }
    }

    /// Applies one retained message; an empty payload deletes the document. A refused message
    /// changes nothing.
    pub(crate) fn ingest(&mut self, topic: DocTopic<'_>, payload: &[u8]) -> Result<(), DesiredError> {
        match topic {
            DocTopic::Name(node) => {
                if node.len() > NODE_NAME_MAX {
                    return Err(DesiredError::TooLong);
                }
                if payload.is_empty() {
                    self.names.remove(node);
                    return Ok(());
                }
                let doc = DesiredDocument::parse(payload)?;
                if !self.names.contains_key(node) && self.names.len() >= self.limit {
                    return Err(DesiredError::Full);
                }
                self.remember(node, doc.version);
                self.names.insert(node.to_owned(), doc);
            }
            DocTopic::Instance(node, instance) => {
                self.check_instance(node, instance)?;
                if payload.is_empty() {
                    self.instances.remove(instance);
                    return Ok(());
                }
                let doc = DesiredDocument::parse(payload)?;
                self.remember(node, doc.version);
                put(&mut self.instances, self.limit, node, instance, doc)?;
            }
            DocTopic::Reported(node, instance) => {
                self.check_instance(node, instance)?;
                if payload.is_empty() {
                    self.reports.remove(instance);
                    return Ok(());
                }
                let doc = ReportedDocument::parse(payload, node, instance)?;
                self.remember(node, doc.version);
                put(&mut self.reports, self.limit, node, instance, doc)?;
            }
        }
        Ok(())
    }

    /// Refuses an instance topic that no node of `node` could own.
    fn check_instance(&self, node: &str, instance: &str) -> Result<(), DesiredError> {
        if node.len() > NODE_NAME_MAX || instance.len() > INSTANCE_ID_MAX {
            return Err(DesiredError::TooLong);
        }
        let taken = self.node_of(instance).is_some_and(|known| known != node);
        if !belongs(node, instance) || taken {
            return Err(DesiredError::ForeignInstance);
        }
        Ok(())
    }

    /// Raises the highest version known for `node`, if there is room to remember it.
    fn remember(&mut self, node: &str, version: u64) {
        let room = self.highest.len() < self.limit;
        match self.highest.get_mut(node) {
            Some(highest) => *highest = (*highest).max(version),
            None if room => {
                self.highest.insert(node.to_owned(), version);
            }
            None => {}
        }
    }

    /// The highest version seen for `node` (0 for none).
    pub(crate) fn highest(&self, node: &str) -> u64 {
        self.highest.get(node).copied().unwrap_or(0)
    }

    /// The name document of `node`.
    pub(crate) fn name_document(&self, node: &str) -> Option<&DesiredDocument> {
        self.names.get(node)
    }

    /// The instance document of `instance`.
    pub(crate) fn instance_document(&self, instance: &str) -> Option<&DesiredDocument> {
        self.instances.get(instance).map(|o| &o.doc)
    }

    /// The instance documents of `node`'s instances.
    pub(crate) fn instance_documents<'s>(&'s self, node: &'s str) -> impl Iterator<Item = &'s DesiredDocument> + 's {
        self.instances.values().filter(move |o| o.node_name == node).map(|o| &o.doc)
    }

    /// The node name an instance's document or report was published under.
    pub(crate) fn node_of(&self, instance: &str) -> Option<&str> {
        let from_doc = self.instances.get(instance).map(|o| o.node_name.as_str());
        from_doc.or_else(|| self.reports.get(instance).map(|o| o.node_name.as_str()))
    }

    /// The version of the document on `topic`, if there is one.
    pub(crate) fn version_on(&self, topic: DocTopic<'_>) -> Option<u64> {
        match topic {
            DocTopic::Name(node) => self.name_document(node).map(|d| d.version),
            DocTopic::Instance(_, instance) => self.instance_document(instance).map(|d| d.version),
            DocTopic::Reported(_, instance) => self.reports.get(instance).map(|o| o.doc.version),
        }
    }

    /// Forgets the documents about these instances (pruned).
    pub(crate) fn forget<'a>(&mut self, instance_ids: impl IntoIterator<Item = &'a str>) {
        for id in instance_ids {
            self.instances.remove(id);
            self.reports.remove(id);
        }
    }

    /// The desired state of every instance `target` shows: the registry's, then those only
    /// documents or reports know of; by node name, then instance id.
    pub(crate) fn states(&self, registry: &Registry, target: &Target) -> Vec<InstanceState> {
        let mut states: Vec<InstanceState> = registry
            .instances()
            .iter()
            .filter(|i| shown(target, &i.node_name, &i.instance_id, Some(i)))
            .map(|i| self.state(&i.node_name, &i.instance_id, Some(i.status)))
            .collect();
        let unregistered = self.instances.iter().map(|(id, o)| (id, &o.node_name));
        let unregistered = unregistered.chain(self.reports.iter().map(|(id, o)| (id, &o.node_name)));
        for (id, node) in unregistered {
            let new = registry.get(id).is_none() && !states.iter().any(|s| &s.instance_id == id);
            if new && shown(target, node, id, None) {
                states.push(self.state(node, id, None));
            }
        }
        states.sort_by(|a, b| (&a.node_name, &a.instance_id).cmp(&(&b.node_name, &b.instance_id)));
        states
    }

    /// Whether one instance is in sync, and the versions that say so, without copying settings.
    pub(crate) fn sync(&self, node: &str, instance: &str) -> DesiredSync {
        let version = |d: Option<&DesiredDocument>| d.map_or(0, |d| d.version);
        let desired_version = version(self.name_document(node)).max(version(self.instance_document(instance)));
        let reported = self.reports.get(instance).map(|o| &o.doc);
        DesiredSync {
            desired_version,
            reported_version: reported.map(|r| r.version),
            in_sync: in_sync(desired_version, reported),
        }
    }

    /// One instance's desired state.
    fn state(&self, node: &str, instance: &str, status: Option<Status>) -> InstanceState {
        let name_doc = self.name_document(node);
        let instance_doc = self.instance_document(instance);
        let desired = merge(name_doc, instance_doc);
        let reported = self.reports.get(instance).map(|o| o.doc.clone());
        InstanceState {
            instance_id: instance.to_owned(),
            node_name: node.to_owned(),
            status,
            name_version: name_doc.map(|d| d.version),
            instance_version: instance_doc.map(|d| d.version),
            overrides: instance_doc.map(|d| d.settings.clone()).unwrap_or_default(),
            in_sync: in_sync(desired.version, reported.as_ref()),
            desired,
            reported,
        }
    }
}

/// Inserts an instance's document, if it is already known or there is room.
fn put<T>(
    map: &mut HashMap<String, Owned<T>>,
    limit: usize,
    node: &str,
    instance: &str,
    doc: T,
) -> Result<(), DesiredError> {
    if !map.contains_key(instance) && map.len() >= limit {
        return Err(DesiredError::Full);
    }
    map.insert(instance.to_owned(), Owned { node_name: node.to_owned(), doc });
    Ok(())
}

/// Whether `target` shows an instance; one the registry does not know (`inst` `None`) only by
/// its node name or id.
fn shown(target: &Target, node: &str, id: &str, inst: Option<&Instance>) -> bool {
    match target {
        Target::Node(n) => n == node,
        Target::Instance { node_name, instance_id } => {
            instance_id == id && node_name.as_deref().is_none_or(|n| n == node)
        }
        Target::Select(s) => match inst {
            Some(i) => s.lists(i),
            None => {
                s.version.is_none()
                    && s.hostname.is_none()
                    && s.status.is_none()
                    && s.node_name.as_deref().is_none_or(|n| n == node)
            }
        },
    }
}

/// One instance's desired state, as `subnode config show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceState {
    /// Its instance id.
    pub instance_id: String,
    /// Its node name.
    pub node_name: String,
    /// Its status in the registry; `None` if only its documents or report know of it.
    pub status: Option<Status>,
    /// The version of its node name's document, if there is one.
    pub name_version: Option<u64>,
    /// The version of its own document, if there is one.
    pub instance_version: Option<u64>,
    /// Its own document's settings, which override the name's.
    pub overrides: Settings,
    /// Both documents merged.
    pub desired: Merged,
    /// What it last reported applying.
    pub reported: Option<ReportedDocument>,
    /// Its report has the merged version, rejects nothing and carries no error.
    pub in_sync: bool,
}

impl InstanceState {
    /// Whether it may be running: online or missing, or not in the registry but reporting.
    /// Only these can drift; a stopped instance catches up when it starts.
    pub fn running(&self) -> bool {
        self.status.map_or(self.reported.is_some(), |s| matches!(s, Status::Online | Status::Missing))
    }

    /// The object `subnode config show --json` prints.
    pub fn to_json(&self) -> Value {
        let settings =
            |s: &Settings| s.iter().map(|(k, v)| (k.clone(), v.to_value())).collect::<serde_json::Map<_, _>>();
        let reported = self.reported.as_ref().map(|r| {
            json!({
                "timestamp": r.timestamp,
                "version": r.version,
                "settings": settings(&r.settings),
                "rejected": r.rejected,
                "error": r.error,
            })
        });
        json!({
            "instance_id": self.instance_id,
            "node_name": self.node_name,
            "status": self.status.map(Status::as_str),
            "desired": {
                "version": self.desired.version,
                "settings": settings(&self.desired.settings),
                "name_version": self.name_version,
                "instance_version": self.instance_version,
                "overrides": self.overrides.keys().collect::<Vec<_>>(),
            },
            "reported": reported,
            "in_sync": self.in_sync,
        })
    }
}

/// Whether an instance is in sync, and the versions that say so: the console's fleet table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DesiredSync {
    /// Its two documents' merged version (0: nothing desired).
    pub desired_version: u64,
    /// The version it last reported applying; `None` without a report.
    pub reported_version: Option<u64>,
    /// Its report has the merged version, rejects nothing and carries no error.
    pub in_sync: bool,
}
