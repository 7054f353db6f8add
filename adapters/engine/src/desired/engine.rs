//! The engine's desired-state calls: set and unset settings for a node name or one instance
//! (read the current document, publish the next one retained, wait until the broker hands it
//! back), and the state of every instance.

use std::sync::Mutex;
use std::time::Duration;

use rumqttc::QoS;
use subnodesync_core::{INSTANCE_ID_MAX, NODE_NAME_MAX};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{check_fits, check_key, next_version, DesiredDocument, DesiredError, DocTopic, SettingValue, Settings};
use super::{DesiredSync, InstanceState, Store, MAX_SETTINGS};
use crate::engine::{lock, now_ms, Engine};
use crate::error::Error;
use crate::registry::belongs;
use crate::target::{topic_level, Target};
use crate::timestamp::rfc3339;

/// How long [`Engine::set_desired`] and [`Engine::unset_desired`] wait for the broker to hand
/// the new document back.
pub const DESIRED_CONFIRM_WITHIN: Duration = Duration::from_secs(10);
/// How long they wait for the broker's retained documents before reading the current one.
const SYNC_WITHIN: Duration = Duration::from_secs(5);

/// What the engine's handle and its connection task share of desired state.
#[derive(Debug)]
pub(crate) struct Desired {
    /// The documents as the broker holds them.
    pub(crate) store: Mutex<Store>,
    /// Bumped whenever a desired-state message was ingested: a writer waiting for its document.
    changed: watch::Sender<u64>,
    /// One change at a time, so two changes never build on the same document.
    writes: tokio::sync::Mutex<()>,
}

impl Desired {
    /// Nothing heard yet; at most `limit` documents of each kind kept.
    pub(crate) fn new(limit: usize) -> Self {
        Self { store: Mutex::new(Store::new(limit)), changed: watch::channel(0).0, writes: tokio::sync::Mutex::new(()) }
    }

    /// Ingests a message if `topic` is a desired-state topic under `prefix`; `None` if it is not.
    pub(crate) fn on_publish(&self, prefix: &str, topic: &str, payload: &[u8]) -> Option<Result<(), DesiredError>> {
        let doc_topic = DocTopic::split(prefix, topic)?;
        let ingested = lock(&self.store).ingest(doc_topic, payload);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        Some(ingested)
    }
}

/// A desired document the engine published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The topic it was published on, retained.
    pub topic: String,
    /// The node name it is for.
    pub node_name: String,
    /// The instance it is for; `None` for every instance of the name.
    pub instance_id: Option<String>,
    /// The document.
    pub document: DesiredDocument,
}

impl Engine {
    /// Sets `settings` in the desired document of `target` (`Target::Node`: every instance of
    /// the name; `Target::Instance`: that one, overriding the name's): publishes the current
    /// document with these settings added or replaced, under the next version, and returns once
    /// the broker has handed it back.
    pub async fn set_desired(&self, target: &Target, settings: &[(String, SettingValue)]) -> Result<Published, Error> {
        for (key, _) in settings {
            check_key(key).map_err(Error::InvalidSetting)?;
        }
        self.change_desired(target, |current| {
            current.extend(settings.iter().cloned());
        })
        .await
    }

    /// Removes `keys` from the desired document of `target`, as [`set_desired`](Self::set_desired)
    /// changes it. A document left without settings is still published (empty), so its version
    /// still rises and every instance hears of the change.
    pub async fn unset_desired(&self, target: &Target, keys: &[String]) -> Result<Published, Error> {
        self.change_desired(target, |current| {
            for key in keys {
                current.remove(key);
            }
        })
        .await
    }

    /// The desired state of every instance `target` selects (`*` or a selector: the registry's
    /// listing, and instances only a document or a report knows of), as last heard.
    pub fn desired_state(&self, target: &Target) -> Vec<InstanceState> {
        let registry = lock(&self.shared.registry);
        lock(&self.shared.desired.store).states(&registry, target)
    }

    /// Whether `instance_id` of `node_name` is in sync, and the versions that say so: a cheap
    /// look-up for every row of a fleet table.
    pub fn desired_sync(&self, node_name: &str, instance_id: &str) -> DesiredSync {
        lock(&self.shared.desired.store).sync(node_name, instance_id)
    }

    /// Reads the target's document after the broker's retained ones arrived, changes it, and
    /// publishes it under the next version.
    async fn change_desired(&self, target: &Target, change: impl FnOnce(&mut Settings)) -> Result<Published, Error> {
        let desired = &self.shared.desired;
        let _one_at_a_time = desired.writes.lock().await;
        if !self.wait_synced(SYNC_WITHIN).await {
            return Err(self.connection_problem().map_or(Error::Unsynced, Error::Mqtt));
        }
        let (node, instance) = self.desired_target(target)?;
        let doc_topic = match &instance {
            Some(id) => DocTopic::Instance(&node, id),
            None => DocTopic::Name(&node),
        };
        let document = {
            let store = lock(&desired.store);
            let current = match doc_topic {
                DocTopic::Instance(_, id) => store.instance_document(id),
                _ => store.name_document(&node),
            };
            let mut settings = current.map(|d| d.settings.clone()).unwrap_or_default();
            change(&mut settings);
            if settings.len() > MAX_SETTINGS {
                return Err(Error::InvalidSetting(DesiredError::TooManySettings(settings.len())));
            }
            let now = now_ms();
            let version = next_version(now, store.highest(&node)).map_err(Error::InvalidSetting)?;
            let doc = DesiredDocument { version, timestamp: Some(rfc3339(now)), settings };
            // Whatever instance ends up with this document beside its other one must hold both.
            let fits = match doc_topic {
                DocTopic::Instance(..) => check_fits(store.name_document(&node), Some(&doc)),
                _ => std::iter::once(None)
                    .chain(store.instance_documents(&node).map(Some))
                    .try_for_each(|other| check_fits(Some(&doc), other)),
            };
            fits.map_err(Error::InvalidSetting)?;
            doc
        };
        let topic = doc_topic.topic(&self.shared.config.topic_prefix);
        let mut changed = desired.changed.subscribe();
        self.client
            .publish(topic.clone(), QoS::AtLeastOnce, true, document.to_json())
            .await
            .map_err(|e| Error::Mqtt(e.to_string()))?;
        // The engine subscribes to its own topics: the broker hands the document back once it
        // took it (and not at all if an ACL drops it, which a PUBACK would not tell).
        let deadline = Instant::now() + DESIRED_CONFIRM_WITHIN;
        loop {
            let confirmed = lock(&desired.store).version_on(doc_topic).is_some_and(|v| v >= document.version);
            if confirmed {
                break;
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Stopped),
                Err(_) => return Err(Error::Unconfirmed(topic)),
            }
        }
        Ok(Published { topic, node_name: node, instance_id: instance, document })
    }

    /// The node name and instance (`None`: the name's document) that `target` sets.
    fn desired_target(&self, target: &Target) -> Result<(String, Option<String>), Error> {
        let (node, instance) = match target {
            Target::Node(node) => (node.clone(), None),
            Target::Instance { node_name, instance_id } => {
                topic_level(instance_id)?;
                let node = match node_name {
                    Some(n) => n.clone(),
                    None => {
                        let from_registry = lock(&self.shared.registry).get(instance_id).map(|i| i.node_name.clone());
                        let known = from_registry
                            .or_else(|| lock(&self.shared.desired.store).node_of(instance_id).map(str::to_owned));
                        known.ok_or_else(|| Error::UnknownInstance(instance_id.clone()))?
                    }
                };
                if instance_id.len() > INSTANCE_ID_MAX || !belongs(&node, instance_id) {
                    return Err(Error::InvalidTarget(format!("{instance_id:?} is not an instance id of {node:?}")));
                }
                (node, Some(instance_id.clone()))
            }
            Target::Select(_) => {
                return Err(Error::InvalidTarget("desired state is set for NODE/* or one instance".into()));
            }
        };
        topic_level(&node)?;
        if node.len() > NODE_NAME_MAX {
            return Err(Error::InvalidTarget(format!("node names are at most {NODE_NAME_MAX} bytes")));
        }
        Ok((node, instance))
    }
}
