fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure().compile_protos(
        &[
            "kamaji/v1/common.proto",
            "kamaji/v1/datastores.proto",
            "kamaji/v1/tenant_clusters.proto",
            "kamaji/v1/bootstrap_tokens.proto",
            "kamaji/v1/tenant_backups.proto",
        ],
        &["."],
    )?;
    Ok(())
}
