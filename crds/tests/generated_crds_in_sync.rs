//! The committed CRD YAML must be exactly what the Rust types generate.
use std::path::Path;

#[test]
fn committed_crds_match_the_rust_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for crd in oaas_crds::hub_crds()
        .into_iter()
        .chain(oaas_crds::spoke_crds())
    {
        let path = root.join(oaas_crds::crd_path(&crd));
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `just generate`", path.display()));
        assert!(
            committed == oaas_crds::crd_yaml(&crd),
            "{} is out of date with crds/src; run `just generate` and commit the result",
            path.display()
        );
    }
}
