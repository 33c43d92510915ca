//! The header and the Rust mirror agree on every size, offset and constant.
//!
//! The test writes a C file that `_Static_assert`s each number the Rust
//! compiler computed for `sys` (through `sys::STRUCTS` and
//! `sys::CONSTANTS`) against the header, and compiles it with the system C
//! compiler through the `cc` crate. A struct, field or constant that drifts
//! on either side fails the compile, and the compiler's message names it.
//! A second pass reads the header's text to prove the Rust lists are
//! complete: every struct and constant the header defines is mirrored.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use odock_plugin_abi::sys;

fn header_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include")
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
        panic!("the layout test knows no target triple for this OS")
    }
}

/// Compiles `source` (a C file) to an object; panics with the compiler's
/// output when it does not compile.
fn compile(name: &str, source: &str, std: &str, cpp: bool) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("layout")
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(if cpp { "check.cpp" } else { "check.c" });
    std::fs::write(&file, source).unwrap();
    let triple = target_triple();
    let result = cc::Build::new()
        .cargo_metadata(false)
        .cargo_warnings(false)
        .target(&triple)
        .host(&triple)
        .opt_level(0)
        .debug(false)
        .out_dir(&dir)
        .cpp(cpp)
        .std(std)
        .include(header_dir())
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .flag("-pedantic")
        .file(&file)
        .try_compile_intermediates();
    if let Err(e) = result {
        panic!("{name}: the C compiler rejected {}:\n{e}", file.display());
    }
}

fn static_asserts() -> String {
    let mut c = String::from("#include <stddef.h>\n#include \"odock_plugin.h\"\n\n");
    for s in sys::STRUCTS {
        let t = s.c_name;
        writeln!(
            c,
            "_Static_assert(sizeof({t}) == {}, \"sizeof({t}) differs from Rust ({})\");",
            s.size, s.size
        )
        .unwrap();
        writeln!(
            c,
            "_Static_assert(_Alignof({t}) == {}, \"alignof({t}) differs from Rust ({})\");",
            s.align, s.align
        )
        .unwrap();
        for f in s.fields {
            let n = f.name;
            writeln!(
                c,
                "_Static_assert(offsetof({t}, {n}) == {o}, \"offsetof({t}, {n}) differs from Rust ({o})\");",
                o = f.offset
            )
            .unwrap();
            writeln!(
                c,
                "_Static_assert(sizeof((({t} *)0)->{n}) == {z}, \"sizeof({t}.{n}) differs from Rust ({z})\");",
                z = f.size
            )
            .unwrap();
        }
    }
    for (name, value) in sys::CONSTANTS {
        writeln!(
            c,
            "_Static_assert((unsigned long long)({name}) == {value}ULL, \"{name} differs from Rust ({value})\");"
        )
        .unwrap();
    }
    c
}

#[test]
fn header_and_rust_agree_on_every_size_offset_and_constant() {
    compile("asserts", &static_asserts(), "c11", false);
}

#[test]
fn the_static_asserts_catch_a_drift() {
    // The check above must be able to fail: the same file with one number
    // off by one does not compile.
    let good = static_asserts();
    let needle = format!(
        "sizeof(odock_frame_t) == {}",
        size_of::<sys::odock_frame_t>()
    );
    assert!(
        good.contains(&needle),
        "the generated file checks the frame"
    );
    let bad = good.replacen(
        &needle,
        &format!(
            "sizeof(odock_frame_t) == {}",
            size_of::<sys::odock_frame_t>() + 1
        ),
        1,
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("layout-drift");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("drift.c");
    std::fs::write(&file, bad).unwrap();
    let triple = target_triple();
    let result = cc::Build::new()
        .cargo_metadata(false)
        .cargo_warnings(false)
        .target(&triple)
        .host(&triple)
        .opt_level(0)
        .out_dir(&dir)
        .std("c11")
        .include(header_dir())
        .file(&file)
        .try_compile_intermediates();
    assert!(result.is_err(), "a wrong size must not compile");
}

#[test]
fn the_header_is_clean_c99_and_cpp() {
    let source = "#include \"odock_plugin.h\"\nint odock_layout_check_unit;\n";
    compile("c99", source, "c99", false);
    compile("cpp", source, "c++11", true);
}

/// The names the header defines: typedef'd structs and `ODOCK_*` constants.
fn header_names() -> (BTreeSet<String>, BTreeSet<String>) {
    let text = odock_plugin_abi::HEADER;
    let mut structs = BTreeSet::new();
    let mut constants = BTreeSet::new();
    // Macros that are no integer constants.
    let not_constants = [
        "ODOCK_PLUGIN_H",
        "ODOCK_PLUGIN_EXPORT",
        "ODOCK_HAS_FIELD",
        "ODOCK_PLUGIN_ENTRY_SYMBOL",
    ];
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("typedef struct ") {
            let tag = rest.split_whitespace().next().unwrap();
            // `typedef struct odock_call odock_call_t;` declares an opaque
            // handle, not a layout.
            if rest.trim_end().ends_with('{') {
                structs.insert(format!("{tag}_t"));
            }
        }
        let name = if let Some(rest) = line.strip_prefix("#define ") {
            rest.split(|c: char| c.is_whitespace() || c == '(').next()
        } else if line.starts_with("ODOCK_") && (line.contains(" = ") || line.ends_with(',')) {
            line.split(|c: char| c.is_whitespace() || c == ',').next()
        } else {
            None
        };
        if let Some(name) = name
            && name.starts_with("ODOCK_")
            && !not_constants.contains(&name)
        {
            constants.insert(name.to_owned());
        }
    }
    (structs, constants)
}

#[test]
fn the_rust_mirror_covers_the_whole_header() {
    let (structs, constants) = header_names();
    let rust_structs: BTreeSet<String> = sys::STRUCTS.iter().map(|s| s.c_name.to_owned()).collect();
    let rust_constants: BTreeSet<String> = sys::CONSTANTS
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    assert!(
        structs.len() >= 15,
        "the header scan found too few structs: {structs:?}"
    );
    assert!(
        constants.len() >= 50,
        "the header scan found too few constants: {constants:?}"
    );
    assert_eq!(
        structs, rust_structs,
        "structs of the header vs. sys::STRUCTS"
    );
    assert_eq!(
        constants, rust_constants,
        "constants of the header vs. sys::CONSTANTS"
    );
}

#[test]
fn the_entry_symbol_carries_the_major_version() {
    let define = format!(
        "#define ODOCK_PLUGIN_ENTRY_SYMBOL \"{}\"",
        sys::ODOCK_PLUGIN_ENTRY_SYMBOL
    );
    assert!(odock_plugin_abi::HEADER.contains(&define));
    assert!(
        sys::ODOCK_PLUGIN_ENTRY_SYMBOL.ends_with(&format!("_v{}", sys::ODOCK_PLUGIN_ABI_MAJOR))
    );
    assert!(
        odock_plugin_abi::HEADER.contains(&format!("{}(void);", sys::ODOCK_PLUGIN_ENTRY_SYMBOL))
    );
}
