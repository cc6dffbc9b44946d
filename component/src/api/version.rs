//! Which version of a model a request names, and how TF Serving describes it.

/// Which version of a model a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSelector {
    Latest,
    Number(u64),
    Label(String),
}

impl VersionSelector {
    /// How TF Serving names the request in its "Servable not found" errors.
    pub fn describe(&self, model: &str) -> String {
        match self {
            VersionSelector::Latest => format!("Latest({model})"),
            VersionSelector::Number(v) => format!("Specific({model}, {v})"),
            VersionSelector::Label(l) => format!("Label({model}, {l})"),
        }
    }
}
