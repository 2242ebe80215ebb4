//! Writes every CRD to `manifests/crds/` (run from the repository root: `just generate`).
use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    for crd in oaas_crds::hub_crds()
        .into_iter()
        .chain(oaas_crds::spoke_crds())
    {
        let path = Path::new(&root).join(oaas_crds::crd_path(&crd));
        std::fs::create_dir_all(path.parent().expect("crd_path has a directory"))?;
        std::fs::write(&path, oaas_crds::crd_yaml(&crd))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
