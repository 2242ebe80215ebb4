//! What the renderer is told about this CRM, fixed at start-up: the profile, the features
//! that are on, and the data grid's image and port. `config.rs` builds these from the
//! environment; the renderer never reads the environment itself.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Dev,
    Edge,
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Features {
    pub odgm: bool,
    pub knative: bool,
    pub hpa: bool,
    pub prometheus: bool,
    pub nfr_enforcement: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OdgmSettings {
    pub image: String,
    pub port: u16,
}

/// The start-up part of every render: built once, shared by the controller and the NFR
/// analyzer.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub profile: Profile,
    pub features: Features,
    pub odgm: OdgmSettings,
}
