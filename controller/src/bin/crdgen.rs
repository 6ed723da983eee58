//! `crdgen`: writes the generated CRD manifests (`crds/`, including the KongPlugin kinds, and `manifests/gateway-api-crds.yaml`,
//! see `controller::crds`) into the workspace, or prints them with `--print`.

use std::path::Path;

use anyhow::Context;
use controller::crds::{
    gateway_api_crds, own_crds, plugin_crds, GATEWAY_API_CRDS_PATH, OWN_CRDS_PATH, PLUGIN_CRDS_PATH,
};

fn main() -> anyhow::Result<()> {
    let own = own_crds()?;
    let plugins = plugin_crds()?;
    let gateway_api = gateway_api_crds()?;
    if std::env::args().skip(1).any(|a| a == "--print") {
        print!("{own}{plugins}{gateway_api}");
        return Ok(());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (path, text) in [(OWN_CRDS_PATH, own), (PLUGIN_CRDS_PATH, plugins), (GATEWAY_API_CRDS_PATH, gateway_api)] {
        let full = root.join(path);
        if let Some(dir) = full.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&full, text).with_context(|| format!("writing {}", full.display()))?;
        println!("wrote {path}");
    }
    Ok(())
}
