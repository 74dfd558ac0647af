//! What the list data sources (`kamaji_datastores`, `kamaji_tenant_clusters`) share: the
//! `labels` filter (checked at plan, sent as a selector), the element type of their result list,
//! and the listing's id, made of its filters.

use std::collections::{BTreeMap, HashMap};

use tf_provider::schema::AttributeType;
use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};

/// The `labels` filter as written.
pub type LabelFilter = Value<BTreeMap<String, Value<String>>>;

/// A list of objects with these fields, as a computed attribute's type.
pub fn objects(fields: &[(&str, AttributeType)]) -> AttributeType {
    AttributeType::List(Box::new(AttributeType::Object(
        fields
            .iter()
            .map(|(k, t)| ((*k).to_owned(), t.clone()))
            .collect(),
    )))
}

/// Refuses a label filter that no object could carry, on `labels`.
pub fn check_labels(diags: &mut Diagnostics, labels: &LabelFilter) {
    if let Value::Value(labels) = labels {
        let known: Vec<(&str, &str)> = labels
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_ref_option()?.as_str())))
            .collect();
        if let Err(e) = kamaji_proto::validate::labels("labels", known) {
            diags.error("Invalid labels", e.message, AttributePath::new("labels"));
        }
    }
}

/// The known labels of the filter, as the API's selector.
pub fn selector(labels: &LabelFilter) -> HashMap<String, String> {
    labels
        .as_ref_option()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_ref_option()?.clone())))
                .collect()
        })
        .unwrap_or_default()
}

/// The listing's id: its filters, sorted, or `all`.
pub fn id(selector: &HashMap<String, String>, more: &[(&str, &str)]) -> Value<String> {
    let mut filters: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    filters.sort();
    filters.extend(
        more.iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={v}")),
    );
    Value::Value(if filters.is_empty() {
        "all".into()
    } else {
        filters.join(",")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_is_named_by_its_filters() {
        let sel: HashMap<String, String> =
            [("tier".into(), "gold".into()), ("az".into(), "a".into())].into();
        assert_eq!(id(&sel, &[]), Value::Value("az=a,tier=gold".into()));
        assert_eq!(
            id(&HashMap::new(), &[("datastore", "")]),
            Value::Value("all".into())
        );
        assert_eq!(
            id(&HashMap::new(), &[("datastore", "shard-a")]),
            Value::Value("datastore=shard-a".into())
        );
    }
}
