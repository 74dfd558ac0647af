# A datastore is imported by its name. Keys are never returned by kamajid: the first apply
# after an import records client_key and client_ca_key in state (an in-place update).
terraform import kamaji_datastore.eu1_a eu1-a
