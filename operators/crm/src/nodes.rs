//! How many Nodes the cluster has and how many are Ready, for GetClusterInfo. Kept from a
//! watch of Nodes rather than listed per call: the hub checks every spoke every 10 s by
//! default, and each list sends every Node whole (tens of KiB each, so megabytes per call in
//! a cluster of a few hundred Nodes) while the watch sends only the Nodes that change. Until
//! the watch has its first list, and whenever it fails, the counts are unknown and the caller
//! lists instead.
use std::collections::HashMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tracing::warn;

/// Nodes in the cluster, and how many of them are Ready.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCounts {
    pub total: u32,
    pub ready: u32,
}

impl NodeCounts {
    fn of(ready: impl Iterator<Item = bool>) -> Self {
        ready.fold(Self::default(), |counts, ready| Self {
            total: counts.total + 1,
            ready: counts.ready + u32::from(ready),
        })
    }
}

/// Whether the Node's `Ready` condition is True.
fn is_ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Counts every Node with one list: what a call answers while the watch cannot.
pub async fn list(client: &Client) -> Result<NodeCounts, kube::Error> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    Ok(NodeCounts::of(nodes.items.iter().map(is_ready)))
}

/// What the watch keeps of each Node: its name and whether it is Ready.
#[derive(Default)]
struct Readiness {
    /// By name; `None` until the first list is in.
    nodes: Option<HashMap<String, bool>>,
    /// A list in progress (after a start or a failed watch), swapped in when it ends.
    listing: Option<HashMap<String, bool>>,
    /// The watch failed and has not delivered an event since.
    failed: bool,
}

impl Readiness {
    /// Takes in one watch event; the counts it now knows.
    fn take(&mut self, event: Result<watcher::Event<Node>, watcher::Error>) -> Option<NodeCounts> {
        match event {
            Ok(event) => {
                self.failed = false;
                match event {
                    watcher::Event::Init => self.listing = Some(HashMap::new()),
                    watcher::Event::InitApply(node) => {
                        let ready = is_ready(&node);
                        self.listing
                            .get_or_insert_default()
                            .insert(node.name_any(), ready);
                    }
                    watcher::Event::InitDone => {
                        self.nodes = Some(self.listing.take().unwrap_or_default())
                    }
                    watcher::Event::Apply(node) => {
                        let ready = is_ready(&node);
                        if let Some(nodes) = &mut self.nodes {
                            nodes.insert(node.name_any(), ready);
                        }
                    }
                    watcher::Event::Delete(node) => {
                        if let Some(nodes) = &mut self.nodes {
                            nodes.remove(&node.name_any());
                        }
                    }
                }
            }
            Err(_) => self.failed = true,
        }
        self.counts()
    }

    fn counts(&self) -> Option<NodeCounts> {
        match (&self.nodes, self.failed) {
            (Some(nodes), false) => Some(NodeCounts::of(nodes.values().copied())),
            _ => None,
        }
    }
}

/// Starts watching the Nodes; the receiver holds the counts while the watch knows them.
pub fn watch(client: &Client) -> watch::Receiver<Option<NodeCounts>> {
    let (counts, receiver) = watch::channel(None);
    let config = watcher::Config::default().any_semantic();
    let events = watcher(Api::<Node>::all(client.clone()), config).default_backoff();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        let mut readiness = Readiness::default();
        while let Some(event) = events.next().await {
            if let Err(error) = &event {
                warn!(%error, "Node watch failed; Node counts are listed per call until it recovers");
            }
            counts.send_if_modified(|known| {
                let now = readiness.take(event);
                std::mem::replace(known, now) != now
            });
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};

    fn node(name: &str, ready: bool) -> Node {
        let mut node = Node::default();
        node.metadata.name = Some(name.into());
        node.status = Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        node
    }

    fn counts(total: u32, ready: u32) -> Option<NodeCounts> {
        Some(NodeCounts { total, ready })
    }

    #[test]
    fn counts_are_known_from_the_end_of_the_first_list_and_follow_each_change() {
        let mut readiness = Readiness::default();
        assert_eq!(readiness.take(Ok(watcher::Event::Init)), None);
        assert_eq!(
            readiness.take(Ok(watcher::Event::InitApply(node("a", true)))),
            None
        );
        assert_eq!(
            readiness.take(Ok(watcher::Event::InitApply(node("b", false)))),
            None
        );
        assert_eq!(readiness.take(Ok(watcher::Event::InitDone)), counts(2, 1));
        assert_eq!(
            readiness.take(Ok(watcher::Event::Apply(node("b", true)))),
            counts(2, 2)
        );
        assert_eq!(
            readiness.take(Ok(watcher::Event::Apply(node("c", false)))),
            counts(3, 2)
        );
        assert_eq!(
            readiness.take(Ok(watcher::Event::Delete(node("a", true)))),
            counts(2, 1)
        );
        let mut no_status = node("d", true);
        no_status.status = None;
        assert_eq!(
            readiness.take(Ok(watcher::Event::Apply(no_status))),
            counts(3, 1)
        );
    }

    #[test]
    fn a_failed_watch_makes_the_counts_unknown_until_it_delivers_again() {
        let mut readiness = Readiness::default();
        readiness.take(Ok(watcher::Event::Init));
        readiness.take(Ok(watcher::Event::InitApply(node("a", true))));
        assert_eq!(readiness.take(Ok(watcher::Event::InitDone)), counts(1, 1));
        let failure = watcher::Error::NoResourceVersion;
        assert_eq!(readiness.take(Err(failure)), None);
        // A new list replaces what was known only when it ends: a Node gone meanwhile goes.
        assert_eq!(readiness.take(Ok(watcher::Event::Init)), counts(1, 1));
        readiness.take(Ok(watcher::Event::InitApply(node("b", false))));
        assert_eq!(readiness.take(Ok(watcher::Event::InitDone)), counts(1, 0));
        // A watch resumed without a new list is trusted again from its next event.
        assert_eq!(readiness.take(Err(watcher::Error::NoResourceVersion)), None);
        assert_eq!(
            readiness.take(Ok(watcher::Event::Apply(node("b", true)))),
            counts(1, 1)
        );
    }
}
