//! Deletes every namespace the e2e suite created, in the hub and every spoke.
use oaas_e2e::{client_for, delete_all_test_namespaces, hub_context, spoke_contexts};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    for context in std::iter::once(hub_context()).chain(spoke_contexts()) {
        let client = client_for(&context).await?;
        let deleted = delete_all_test_namespaces(&client).await?;
        println!("{context}: deleted {deleted} test namespaces");
    }
    Ok(())
}
