use super::archive::{ArchiveError, Header, Part, Reader, Secrets, Trailer, Writer};
use super::*;
use crate::kek::Kek;
use crate::pki::EncryptionKey;

fn header() -> Header {
    Header {
        id: "prod-20261206101500-00aa".into(),
        tenant: "prod".into(),
        tenant_id: "t-1".into(),
        revision: 42,
        kubernetes_version: "1.37.2".into(),
        created_at: 1_796_000_000,
        sealed_key: String::new(),
        nonce_prefix: String::new(),
    }
}

/// An archive of `n` keys with values of `size` bytes.
fn archive(kek: &Kek, n: usize, size: usize) -> (Vec<u8>, Secrets) {
    let secrets = Secrets {
        encryption_keys: vec![EncryptionKey::generate(3)],
        encrypted_resources: vec!["configmaps".into()],
        identity: None,
    };
    let (mut w, mut out) = Writer::start(kek, header(), &secrets).unwrap();
    for i in 0..n {
        let v = vec![(i % 251) as u8; size];
        out.extend(
            w.entry(format!("configmaps/default/c{i:06}").as_bytes(), &v)
                .unwrap_or_default(),
        );
    }
    w.skip_leased();
    let (tail, trailer) = w.finish();
    assert_eq!(trailer.keys, n as i64);
    out.extend(tail);
    (out, secrets)
}

/// Reads `bytes` fed `chunk` bytes at a time.
fn read(kek: &Kek, bytes: &[u8], chunk: usize) -> Result<Vec<Part>, ArchiveError> {
    let mut r = Reader::new(kek);
    let mut parts = Vec::new();
    for c in bytes.chunks(chunk) {
        parts.extend(r.feed(c)?);
    }
    r.end()?;
    Ok(parts)
}

fn kek() -> Kek {
    Kek::from_bytes(&[7; 32])
}

#[test]
fn an_archive_reads_back_whole_in_chunks_of_any_size() {
    let kek = kek();
    let (bytes, secrets) = archive(&kek, 3000, 700);
    for chunk in [1, 13, 4096, 1 << 20, bytes.len()] {
        let parts = read(&kek, &bytes, chunk).unwrap();
        let Part::Header(h) = &parts[0] else {
            panic!("header first")
        };
        assert_eq!((h.tenant.as_str(), h.revision), ("prod", 42));
        assert_eq!(parts[1], Part::Secrets(secrets.clone()));
        let entries: Vec<_> = parts
            .iter()
            .filter_map(|p| match p {
                Part::Entries(e) => Some(e.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(entries.len(), 3000);
        assert_eq!(entries[2999].key, b"configmaps/default/c002999");
        assert_eq!(entries[2999].value, vec![(2999 % 251) as u8; 700]);
        assert!(parts.len() > 4, "written in several pages");
        assert_eq!(
            parts.last(),
            Some(&Part::Trailer(Trailer {
                keys: 3000,
                bytes: 3000 * (26 + 700),
                leased_skipped: 1
            }))
        );
    }
}

#[test]
fn the_data_is_not_readable_in_the_archive() {
    let kek = kek();
    let (bytes, secrets) = archive(&kek, 10, 10);
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("configmaps/default"));
    assert!(!text.contains(&secrets.encryption_keys[0].secret));
}

#[test]
fn any_flipped_byte_cut_or_extra_byte_is_refused() {
    let kek = kek();
    let (bytes, _) = archive(&kek, 300, 5000);
    // Bytes spread over the whole archive, past the mark: each flip is caught.
    for at in (16..bytes.len()).step_by(bytes.len() / 60) {
        let mut bad = bytes.clone();
        bad[at] ^= 1;
        assert!(
            read(&kek, &bad, 8192).is_err(),
            "a flipped byte at {at} went unnoticed"
        );
    }
    for cut in [bytes.len() - 1, bytes.len() / 2, 20] {
        assert!(matches!(
            read(&kek, &bytes[..cut], 8192),
            Err(ArchiveError::Truncated) | Err(ArchiveError::Frame(_))
        ));
    }
    let mut more = bytes.clone();
    more.push(0);
    assert_eq!(read(&kek, &more, 8192).unwrap_err(), ArchiveError::Trailing);
    assert_eq!(
        read(&kek, b"PK\x03\x04zip", 8).unwrap_err(),
        ArchiveError::NotAnArchive
    );
}

#[test]
fn another_kek_cannot_open_an_archive() {
    let (bytes, _) = archive(&kek(), 5, 5);
    let other = Kek::from_bytes(&[8; 32]);
    assert_eq!(read(&other, &bytes, 4096).unwrap_err(), ArchiveError::Key);
}

#[test]
fn restores_read_the_same_minor_or_the_next_never_a_newer_one() {
    let v = |s| Version::parse(s).unwrap();
    assert!(restorable("1.37.2", v("1.37.0")).is_ok());
    assert!(restorable("1.36.3", v("1.37.2")).is_ok());
    let newer = restorable("1.37.2", v("1.36.3")).unwrap_err();
    assert!(newer.contains("1.37.x or later"), "{newer}");
    assert!(restorable("1.35.0", v("1.37.2"))
        .unwrap_err()
        .contains("more than one minor"));
}

#[test]
fn ids_sort_by_tenant_then_time() {
    assert_eq!(
        new_id("prod", 1_796_000_000, 0xab),
        "prod-20261130005320-00ab"
    );
    assert!(new_id("prod", 1_796_000_000, 1) < new_id("prod", 1_796_000_100, 0));
    assert_eq!(location("prod", "prod-1"), "prod/prod-1.kbak");
}
