//! Where archives are kept: a directory (a volume) or S3-compatible object storage, both through
//! `object_store`, so both write an archive as a multipart upload that appears whole or not at
//! all.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;

/// An opened backup store and how to name it in statuses and errors (no credentials in it).
#[derive(Clone)]
pub struct BackupStore {
    pub objects: Arc<dyn ObjectStore>,
    pub describe: String,
}

impl std::fmt::Debug for BackupStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

/// Opens `--backup-store`: `s3://<bucket>[/<prefix>]` (endpoint, region and credentials from the
/// usual `AWS_*` variables: `AWS_ENDPOINT_URL` for an S3-compatible server, `AWS_ALLOW_HTTP=true`
/// for one without TLS), or a directory (`file:///var/lib/kamajid/backups` or an absolute path).
pub fn open(url: &str) -> Result<BackupStore, String> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!(
                "{url:?} names no bucket: write s3://<bucket>[/<prefix>]"
            ));
        }
        let s3 = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| format!("{url}: {e}"))?;
        let prefix = prefix.trim_matches('/');
        let objects: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        };
        return Ok(BackupStore {
            objects,
            describe: url.trim_end_matches('/').to_owned(),
        });
    }
    let dir = url.strip_prefix("file://").unwrap_or(url);
    if !dir.starts_with('/') {
        return Err(format!(
            "{url:?} is neither s3://<bucket>[/<prefix>] nor an absolute directory (file:///path)"
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {dir}: {e}"))?;
    let local = LocalFileSystem::new_with_prefix(dir).map_err(|e| format!("{dir}: {e}"))?;
    Ok(BackupStore {
        objects: Arc::new(local),
        describe: format!("file://{}", dir.trim_end_matches('/')),
    })
}
