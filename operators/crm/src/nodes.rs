//! How many Nodes the cluster has and how many are Ready, for GetClusterInfo. Kept from a
//! watch of Nodes rather than listed per call: the hub checks every spoke every 10 s by
//! default, and each list sends every Node whole (tens of KiB each, so megabytes per call in
//! a cluster of a few hundred Nodes) while the watch sends only the Nodes that change. Until
//! the watch has its first list the caller lists instead. When the watch fails, the last
//! counts stay: it resumes where it stopped (replaying what it missed) or lists anew, and
//! whether the API server can be reached at all is the caller's to check.
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
    /// A list in progress (at start, or when the watch must list anew), swapped in when it
    /// ends.
    listing: Option<HashMap<String, bool>>,
}

impl Readiness {
    /// Takes in one watch event; the counts it now knows.
    fn take(&mut self, event: watcher::Event<Node>) -> Option<NodeCounts> {
        match event {
            watcher::Event::Init => self.listing = Some(HashMap::new()),
            watcher::Event::InitApply(node) => {
                let ready = is_ready(&node);
                self.listing
                    .get_or_insert_default()
                    .insert(node.name_any(), ready);
            }
            watcher::Event::InitDone => self.nodes = Some(self.listing.take().unwrap_or_default()),
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
        let nodes = self.nodes.as_ref()?;
        Some(NodeCounts::of(nodes.values().copied()))
    }
}

/// Starts watching the Nodes; the receiver holds the counts once the first list is in.
pub fn watch(client: &Client) -> watch::Receiver<Option<NodeCounts>> {
    let (counts, receiver) = watch::channel(None);
    let config = watcher::Config::default().any_semantic();
    let events = watcher(Api::<Node>::all(client.clone()), config).default_backoff();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        let mut readiness = Readiness::default();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    warn!(%error, "Node watch failed; retrying, with the last Node counts kept");
                    continue;
                }
            };
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
        assert_eq!(readiness.take(watcher::Event::Init), None);
        assert_eq!(
            readiness.take(watcher::Event::InitApply(node("a", true))),
            None
        );
        assert_eq!(
            readiness.take(watcher::Event::InitApply(node("b", false))),
            None
        );
        assert_eq!(readiness.take(watcher::Event::InitDone), counts(2, 1));
        assert_eq!(
            readiness.take(watcher::Event::Apply(node("b", true))),
            counts(2, 2)
        );
        assert_eq!(
            readiness.take(watcher::Event::Apply(node("c", false))),
            counts(3, 2)
        );
        assert_eq!(
            readiness.take(watcher::Event::Delete(node("a", true))),
            counts(2, 1)
        );
        let mut no_status = node("d", true);
        no_status.status = None;
        assert_eq!(
            readiness.take(watcher::Event::Apply(no_status)),
            counts(3, 1)
        );
    }

    #[test]
    fn a_new_list_replaces_the_counts_only_when_it_ends() {
        let mut readiness = Readiness::default();
        readiness.take(watcher::Event::Init);
        readiness.take(watcher::Event::InitApply(node("a", true)));
        assert_eq!(readiness.take(watcher::Event::InitDone), counts(1, 1));
        // The watch lists anew (after a gap too long to resume): the old counts stand until
        // the list ends, and a Node gone meanwhile goes with it.
        assert_eq!(readiness.take(watcher::Event::Init), counts(1, 1));
        assert_eq!(
            readiness.take(watcher::Event::InitApply(node("b", false))),
            counts(1, 1)
        );
        assert_eq!(readiness.take(watcher::Event::InitDone), counts(1, 0));
    }
}
