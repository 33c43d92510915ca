//! Building real plugin shared libraries for the `plugin_*` tests: C files
//! through the `cc` crate and the system compiler, and the Rust example
//! through a nested `cargo build` into a target directory of its own (so it
//! never waits on the outer build's lock).

#![allow(
    dead_code,
    reason = "each test binary uses its own subset of the helpers"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use odock_dataplane::plugin::{Grant, Pin, PluginSpec};
use odock_dataplane::runtime::PluginSource;

/// The workspace root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn out_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugins")
}

/// The triple `cc` needs outside a build script.
fn target_triple() -> String {
    let arch = std::env::consts::ARCH;
    if cfg!(target_os = "linux") {
        let env = if cfg!(target_env = "musl") {
            "musl"
        } else {
            "gnu"
        };
        format!("{arch}-unknown-linux-{env}")
    } else if cfg!(target_os = "macos") {
        format!("{arch}-apple-darwin")
    } else {
        panic!("the plugin tests know no target triple for this OS")
    }
}

/// The triple of the machine the tests run on, for `cc` outside a build
/// script.
pub fn host_triple() -> String {
    target_triple()
}

fn library_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

/// Builds a C plugin from `source` (relative to the workspace root) into a
/// shared library named `name`, with `defines`; returns its path.
///
/// Each library is built once per test process; the file appears whole (it
/// is linked under a temporary name and renamed), so tests running at the
/// same time never see half of one.
pub fn c_plugin(name: &str, source: &str, defines: &[(&str, &str)]) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let path = build_c(name, source, defines);
    built.insert(name.to_owned(), path.clone());
    path
}

fn build_c(name: &str, source: &str, defines: &[(&str, &str)]) -> PathBuf {
    let dir = out_root().join("c").join(name);
    let objects_dir = dir.join(format!("obj-{}", std::process::id()));
    std::fs::create_dir_all(&objects_dir).unwrap();
    let triple = target_triple();
    let mut build = cc::Build::new();
    build
        .cargo_metadata(false)
        .cargo_warnings(false)
        .target(&triple)
        .host(&triple)
        .opt_level(1)
        .debug(false)
        .pic(true)
        .std("c99")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .out_dir(&objects_dir)
        .include(root().join("plugin-abi/include"))
        .file(root().join(source));
    for (key, value) in defines {
        build.define(key, Some(*value));
    }
    let objects = build
        .try_compile_intermediates()
        .unwrap_or_else(|e| panic!("{source} does not compile: {e}"));
    let library = library_file(&dir, name);
    let partial = objects_dir.join("partial.so");
    let compiler = build.try_get_compiler().expect("a C compiler");
    let mut link = compiler.to_command();
    link.arg("-shared").arg("-o").arg(&partial).args(&objects);
    let status = link.status().expect("the C compiler runs");
    assert!(status.success(), "linking {} failed", library.display());
    std::fs::rename(&partial, &library).unwrap();
    std::fs::remove_dir_all(&objects_dir).unwrap();
    library
}

/// The C model-guard example.
pub fn c_model_guard() -> PathBuf {
    c_plugin(
        "model_guard_c",
        "plugin-abi/examples/model-guard/c/model_guard.c",
        &[],
    )
}

/// The Rust model-guard example, built as a `cdylib` by a nested cargo.
pub fn rust_model_guard() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    BUILT
        .get_or_init(|| {
            let target_dir = out_root().join("cargo");
            let output = Command::new(env!("CARGO"))
                .current_dir(root())
                .env_remove("CARGO_TARGET_DIR")
                .args([
                    "build",
                    "--quiet",
                    "--offline",
                    "--lib",
                    "-p",
                    "odock-example-model-guard",
                    "--target-dir",
                ])
                .arg(&target_dir)
                .output()
                .expect("cargo runs");
            assert!(
                output.status.success(),
                "building the Rust model-guard failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            library_file(&target_dir.join("debug"), "odock_example_model_guard")
        })
        .clone()
}

/// A workspace plugin crate (`crate_name`, for example
/// `odock-plugin-notify`) built as a `cdylib` by a nested cargo, like
/// [`rust_model_guard`], into the same target directory of its own; each
/// crate is built once per test process.
pub fn rust_plugin(crate_name: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(crate_name) {
        return path.clone();
    }
    let target_dir = out_root().join("cargo");
    let output = Command::new(env!("CARGO"))
        .current_dir(root())
        .env_remove("CARGO_TARGET_DIR")
        .args(["build", "--quiet", "--offline", "--lib", "-p", crate_name])
        .arg("--target-dir")
        .arg(&target_dir)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "building {crate_name} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = library_file(&target_dir.join("debug"), &crate_name.replace('-', "_"));
    built.insert(crate_name.to_owned(), path.clone());
    path
}

/// A spec for `path`, pinned to its current contents.
pub fn spec(name: &str, path: &Path, grant: Grant) -> PluginSpec {
    PluginSpec {
        name: name.to_owned(),
        path: path.to_owned(),
        pin: Pin::of_file(path).expect("the plugin file is readable"),
        grant,
    }
}

/// The C test plugin `tests/plugin_sources/probe.c` built as a plugin named
/// `name` (with more `defines`: `RESPONSE_MODE`, `WITH_APPROVALS`,
/// `WITH_FOLLOWUPS`), as a registry entry for the runtime.
pub fn probe_plugin(name: &str, defines: &[(&str, &str)]) -> PluginSource {
    let quoted = format!("\"{name}\"");
    let mut all = vec![("PLUGIN_NAME", quoted.as_str())];
    all.extend_from_slice(defines);
    let path = c_plugin(
        &format!("probe_{}", name.replace('-', "_")),
        "tests/plugin_sources/probe.c",
        &all,
    );
    PluginSource {
        name: name.into(),
        pin: Pin::of_file(&path).unwrap(),
        path,
    }
}
