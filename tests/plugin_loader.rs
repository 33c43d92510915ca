//! The loader refuses every bad plugin file with an error that names the
//! plugin, the file and the reason, and never crashes doing so. Each test
//! builds a real shared library (or a file that is not one).

mod plugin_support;

use odock_dataplane::plugin::{Grant, LoadError, LoadedPlugin, Pin, Refusal};
use odock_plugin_abi::{Capabilities, Capability};
use plugin_support::{c_model_guard, c_plugin, spec};

fn model_guard_grant() -> Grant {
    Grant::new(Capabilities::of(&[
        Capability::WriteHeaders,
        Capability::Block,
        Capability::EmitEvidence,
    ]))
}

fn refused(spec: &odock_dataplane::plugin::PluginSpec) -> LoadError {
    LoadedPlugin::load(spec).expect_err("the plugin must be refused")
}

#[test]
fn a_good_plugin_loads_and_describes_itself() {
    let path = c_model_guard();
    let plugin = LoadedPlugin::load(&spec("model-guard", &path, model_guard_grant()))
        .expect("the C model-guard loads");
    assert_eq!(plugin.name(), "model-guard");
    assert_eq!(plugin.version(), "1.0.0");
    assert_eq!(plugin.capabilities(), model_guard_grant().capabilities());
    assert!(plugin.config_schema().contains("\"allow\""));
}

#[test]
fn refuses_a_plugin_of_another_major_version() {
    // A library that exports only the v2 entry symbol.
    let path = c_plugin("entry_v2", "tests/plugin_sources/entry_v2.c", &[]);
    let err = refused(&spec("future", &path, Grant::default()));
    assert!(
        matches!(
            err.refusal,
            Refusal::MissingEntry {
                other_major: Some(2)
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.starts_with("plugin `future` ("), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(
        text.contains("built for plugin ABI major version 2 (it exports odock_plugin_entry_v2); this host speaks major version 1"),
        "{text}"
    );

    // A library that exports the v1 symbol with a descriptor of major 2.
    let path = c_plugin(
        "major_two",
        "tests/plugin_sources/misbehaving.c",
        &[("DESCRIPTOR_MAJOR", "2")],
    );
    let err = refused(&spec("misbehaving", &path, Grant::new(Capabilities::ALL)));
    assert!(
        matches!(err.refusal, Refusal::MajorMismatch { plugin: 2 }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("major version 2; this host speaks major version 1")
    );
}

#[test]
fn refuses_a_binary_whose_sha256_is_not_its_pin() {
    let path = c_model_guard();
    let mut spec = spec("model-guard", &path, model_guard_grant());
    let good = spec.pin;
    spec.pin = Pin::of_bytes(b"some other build");
    let err = refused(&spec);
    match &err.refusal {
        Refusal::PinMismatch { pinned, actual } => {
            assert_eq!(*pinned, spec.pin);
            assert_eq!(*actual, good);
        }
        other => panic!("expected a pin mismatch, got {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("SHA-256 mismatch"), "{text}");
    assert!(
        text.contains(&spec.pin.to_string()) && text.contains(&good.to_string()),
        "{text}"
    );
}

#[test]
fn refuses_a_capability_that_is_not_granted() {
    let path = c_model_guard();
    let grant = Grant::new(Capabilities::of(&[
        Capability::WriteHeaders,
        Capability::EmitEvidence,
    ]));
    let err = refused(&spec("model-guard", &path, grant));
    assert!(
        matches!(err.refusal, Refusal::NotGranted { missing } if missing == Capabilities::of(&[Capability::Block])),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("it asks for capabilities that are not granted: block")
    );
}

#[test]
fn refuses_a_file_that_is_not_a_shared_library() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("libnot_a_plugin.so");
    std::fs::write(&text, "#!/bin/sh\necho this is not a shared library\n").unwrap();
    let err = refused(&spec("not-a-plugin", &text, Grant::default()));
    assert!(matches!(err.refusal, Refusal::NotLoadable(_)), "{err}");
    assert!(
        err.to_string().contains("not a loadable shared library"),
        "{err}"
    );

    // Half of a real library: a truncated ELF must be refused, not crash us.
    let whole = std::fs::read(c_model_guard()).unwrap();
    let half = dir.path().join("libhalf.so");
    std::fs::write(&half, &whole[..whole.len() / 2]).unwrap();
    let err = refused(&spec("model-guard", &half, model_guard_grant()));
    assert!(matches!(err.refusal, Refusal::NotLoadable(_)), "{err}");

    // An empty file.
    let empty = dir.path().join("libempty.so");
    std::fs::write(&empty, b"").unwrap();
    let err = refused(&spec("empty", &empty, Grant::default()));
    assert!(matches!(err.refusal, Refusal::NotLoadable(_)), "{err}");
}

#[test]
fn refuses_a_library_without_the_entry_symbol() {
    let path = c_plugin("no_entry", "tests/plugin_sources/no_entry.c", &[]);
    let err = refused(&spec("no-entry", &path, Grant::default()));
    assert!(
        matches!(err.refusal, Refusal::MissingEntry { other_major: None }),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("no entry symbol: the library does not export odock_plugin_entry_v1"),
        "{err}"
    );
}

#[test]
fn refuses_a_missing_file() {
    let path = std::path::Path::new("/nonexistent/libnothing.so");
    let spec = odock_dataplane::plugin::PluginSpec {
        name: "nothing".into(),
        path: path.into(),
        pin: Pin::of_bytes(b""),
        grant: Grant::default(),
    };
    let err = refused(&spec);
    assert!(matches!(err.refusal, Refusal::Unreadable(_)), "{err}");
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn the_loaded_bytes_are_the_pinned_bytes() {
    // Load a copy, then overwrite the file: the loaded plugin is unaffected
    // (it was loaded from a sealed copy of the checked bytes), and a new
    // load of the changed file is refused.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("libmodel_guard.so");
    std::fs::copy(c_model_guard(), &copy).unwrap();
    let spec = spec("model-guard", &copy, model_guard_grant());
    let plugin = LoadedPlugin::load(&spec).expect("loads");
    std::fs::write(&copy, b"replaced").unwrap();
    assert_eq!(plugin.name(), "model-guard");
    assert!(matches!(
        refused(&spec).refusal,
        Refusal::PinMismatch { .. }
    ));
}

#[test]
fn each_load_gets_its_own_library_even_when_fd_numbers_are_reused() {
    // glibc finds loaded objects by name, and a plugin's name is
    // /proc/self/fd/N: loading, dropping and loading others must never hand
    // back a stale library.
    let guard = c_model_guard();
    let other = c_plugin("misbehaving", "tests/plugin_sources/misbehaving.c", &[]);
    let no_entry = c_plugin("no_entry", "tests/plugin_sources/no_entry.c", &[]);
    for _ in 0..3 {
        // `a` stays loaded while the others load: had its memfd been closed,
        // the next memfd would get the same number and the same name.
        let a = LoadedPlugin::load(&spec("model-guard", &guard, model_guard_grant())).unwrap();
        let refused = LoadedPlugin::load(&spec("no-entry", &no_entry, Grant::default()));
        assert!(matches!(
            refused.unwrap_err().refusal,
            Refusal::MissingEntry { .. }
        ));
        let b = LoadedPlugin::load(&spec("misbehaving", &other, Grant::new(Capabilities::ALL)))
            .expect("the second plugin is itself, not the first");
        assert_eq!(b.name(), "misbehaving");
        assert_eq!(a.name(), "model-guard");
        drop(a);
        let c = LoadedPlugin::load(&spec("model-guard", &guard, model_guard_grant())).unwrap();
        assert_eq!(c.name(), "model-guard");
    }
}
