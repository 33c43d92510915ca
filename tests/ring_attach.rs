//! A ring file comes from another process: `attach` checks every field of
//! its meta page and the file length, and names what is wrong.

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

use odock_dataplane::ring::{AttachError, Backing, Geometry, GeometryError, Ring};

fn make(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("ring");
    let ring = Ring::create(Geometry::new(2, 8192).unwrap(), Backing::File(&path)).unwrap();
    ring.producer().unwrap().push(b"kept").unwrap();
    path
}

/// Overwrites bytes of the file at `offset`.
fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .write_all_at(bytes, offset)
        .unwrap();
}

fn attach_err(path: &Path) -> AttachError {
    Ring::attach(path).expect_err("attach must refuse")
}

#[test]
fn a_good_ring_attaches_and_keeps_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = make(dir.path());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let ring = Ring::attach(&path).unwrap();
    assert_eq!(ring.geometry(), Geometry::new(2, 8192).unwrap());
    let mut got = Vec::new();
    ring.consumer()
        .unwrap()
        .drain(|r| got.push(r.to_vec()))
        .unwrap();
    assert_eq!(got, vec![b"kept".to_vec()]);
}

#[test]
fn create_never_overwrites_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = make(dir.path());
    match Ring::create(Geometry::new(1, 4096).unwrap(), Backing::File(&path)) {
        Err(AttachError::Io { op: "open", source }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists)
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
}

#[test]
fn each_bad_meta_field_is_named() {
    type Case = (&'static str, u64, Vec<u8>, fn(&AttachError) -> bool);
    let cases: [Case; 7] = [
        ("magic", 0, b"NOTARING".to_vec(), |e| {
            matches!(e, AttachError::Magic { .. })
        }),
        ("version", 8, 2u32.to_le_bytes().to_vec(), |e| {
            matches!(
                e,
                AttachError::Version {
                    found: 2,
                    supported: 1
                }
            )
        }),
        ("page size", 12, 65536u32.to_le_bytes().to_vec(), |e| {
            matches!(e, AttachError::PageSize { found: 65536, .. })
        }),
        ("lanes", 16, 0u32.to_le_bytes().to_vec(), |e| {
            matches!(e, AttachError::Geometry(GeometryError::Lanes(0)))
        }),
        ("flags", 20, 1u32.to_le_bytes().to_vec(), |e| {
            matches!(e, AttachError::Flags { found: 1 })
        }),
        ("data size", 24, 12345u64.to_le_bytes().to_vec(), |e| {
            matches!(e, AttachError::Geometry(GeometryError::DataSize(12345)))
        }),
        ("recorded length", 32, 1u64.to_le_bytes().to_vec(), |e| {
            matches!(e, AttachError::Length { recorded: 1, .. })
        }),
    ];
    for (field, offset, bytes, check) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = make(dir.path());
        poke(&path, offset, &bytes);
        let err = attach_err(&path);
        assert!(check(&err), "{field}: {err}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn a_truncated_or_foreign_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = make(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 4096)
        .unwrap();
    assert!(
        matches!(attach_err(&path), AttachError::Length { .. }),
        "truncated"
    );

    let tiny = dir.path().join("tiny");
    std::fs::write(&tiny, b"hello").unwrap();
    assert!(matches!(
        attach_err(&tiny),
        AttachError::TooShort { len: 5 }
    ));

    let zeros = dir.path().join("zeros");
    std::fs::write(&zeros, vec![0u8; 16384]).unwrap();
    let err = attach_err(&zeros);
    assert!(matches!(err, AttachError::Magic { found: 0 }), "{err}");
    assert!(err.to_string().contains("not a ring"));

    assert!(matches!(
        attach_err(&dir.path().join("missing")),
        AttachError::Io { op: "open", .. }
    ));
}

#[test]
fn a_memfd_ring_is_sealed_against_resizing() {
    let ring = Ring::create(
        Geometry::new(1, 4096).unwrap(),
        Backing::Memfd("odock-seal"),
    )
    .unwrap();
    // Shrinking would make our mapping fault with SIGBUS: the seal refuses it.
    let err = rustix::fs::ftruncate(ring.memory().fd(), 4096).unwrap_err();
    assert_eq!(err, rustix::io::Errno::PERM);
}
