//! Field-level errors in gRPC statuses.
//!
//! A status caused by one input carries a `google.rpc.BadRequest` whose field violations name
//! the field exactly as the Terraform attribute is named, so the provider can attach the
//! diagnostic to the attribute at fault.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub use kamaji_model::FieldError;

/// Builds a status with `code` whose message lists every violation and whose details carry them.
pub fn field_status(code: Code, errors: &[FieldError]) -> Status {
    let summary = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let mut details = ErrorDetails::new();
    for e in errors {
        details.add_bad_request_violation(e.field.clone(), e.message.clone());
    }
    Status::with_error_details(code, summary, details)
}

/// The field violations a status carries; empty when it names no field.
pub fn field_errors(status: &Status) -> Vec<FieldError> {
    status
        .get_details_bad_request()
        .map(|br| {
            br.field_violations
                .into_iter()
                .map(|v| FieldError {
                    field: v.field,
                    message: v.description,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_survive_a_round_trip_through_a_status() {
        let errs = vec![
            FieldError::new("name", "must be a DNS-1123 label"),
            FieldError::new("network.port", "must be between 1 and 65535"),
        ];
        let status = field_status(Code::InvalidArgument, &errs);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status
            .message()
            .contains("network.port: must be between 1 and 65535"));
        assert_eq!(field_errors(&status), errs);
        assert!(field_errors(&Status::internal("boom")).is_empty());
    }
}
