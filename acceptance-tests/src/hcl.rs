//! HCL the suites write, and reading diagnostics back.

/// HCL of one `kamaji_datastore` whose PEM attributes read the workdir's files by default.
pub struct DatastoreHcl {
    pub label: String,
    pub name: String,
    pub endpoints: Vec<String>,
    pub ca_certificate: String,
    pub client_certificate: String,
    pub client_key: String,
    pub client_ca_certificate: String,
    pub client_ca_key: String,
    /// Extra attribute lines.
    pub extra: String,
}

impl DatastoreHcl {
    pub fn new(label: &str, name: &str, endpoint: &str) -> Self {
        Self {
            label: label.into(),
            name: format!("{name:?}"),
            endpoints: vec![endpoint.into()],
            ca_certificate: "file(\"ca.crt\")".into(),
            client_certificate: "file(\"root.crt\")".into(),
            client_key: "file(\"root.key\")".into(),
            client_ca_certificate: "file(\"ca.crt\")".into(),
            client_ca_key: "file(\"ca.key\")".into(),
            extra: String::new(),
        }
    }

    pub fn render(&self) -> String {
        let eps = self
            .endpoints
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "resource \"kamaji_datastore\" \"{}\" {{\n  name = {}\n  endpoints = [{eps}]\n  ca_certificate = {}\n  client_certificate = {}\n  client_key = {}\n  client_ca_certificate = {}\n  client_ca_key = {}\n{}\n}}\n",
            self.label, self.name, self.ca_certificate, self.client_certificate, self.client_key, self.client_ca_certificate, self.client_ca_key, self.extra
        )
    }
}

/// Whether a diagnostic in terraform's output points at `attribute`: terraform quotes the
/// source line of the attribute the provider named (`  8:   name = "Bad"`).
pub fn points_at(out: &str, attribute: &str) -> bool {
    out.contains("Error: ")
        && out.lines().any(|l| {
            l.trim_start().split_once(':').is_some_and(|(n, rest)| {
                !n.is_empty()
                    && n.chars().all(|c| c.is_ascii_digit())
                    && rest.trim_start().starts_with(&format!("{attribute} "))
            })
        })
}

pub const PROVIDER_HCL: &str =
    "terraform {\n  required_providers {\n    kamaji = { source = \"kamaji/kamaji\" }\n  }\n}\n";
