//! The one error every rule returns: which field, and what is wrong and what is allowed.

/// One input field that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// snake_case field name, nested fields dotted (`network.service_cidr`), as the Terraform
    /// attribute is named so the provider can point at it.
    pub field: String,
    /// What is wrong and what is allowed. Never contains secret material.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// The verdict of one rule on one field.
pub type Check = Result<(), FieldError>;
