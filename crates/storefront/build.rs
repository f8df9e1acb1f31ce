//! Embeds the storefront's assets (stylesheet, htmx, product pictures) in the binary,
//! each with a digest of its content for cache-busting URLs, so the shop needs no
//! files at run time and the build needs no network.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files.sort();
    let mut code = String::from(
        "/// Every embedded asset: its path under `assets/`, bytes and content digest.\n",
    );
    code.push_str("pub static EMBEDDED: &[(&str, &[u8], &str)] = &[\n");
    for (name, path) in &files {
        let bytes = std::fs::read(path).expect("an asset");
        let digest = fnv(&bytes);
        let _ = writeln!(
            code,
            "    ({name:?}, include_bytes!({path:?}), \"{digest:016x}\"),",
            path = path.display().to_string()
        );
    }
    code.push_str("];\n");
    #[allow(
        clippy::disallowed_methods,
        reason = "a build script is told where to write by Cargo's environment"
    )]
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("assets.rs");
    std::fs::write(out, code).expect("written");
}

/// Files to serve: stylesheets, scripts and pictures (not the style guide or licences).
fn collect(root: &Path, folder: &Path, files: &mut Vec<(String, std::path::PathBuf)>) {
    for entry in std::fs::read_dir(folder)
        .expect("the assets folder")
        .flatten()
    {
        let path = entry.path();
        println!("cargo:rerun-if-changed={}", path.display());
        if path.is_dir() {
            collect(root, &path, files);
            continue;
        }
        let served = path
            .extension()
            .and_then(|extension| extension.to_str())
            .is_some_and(|extension| matches!(extension, "css" | "js" | "svg"));
        if served {
            let name = path
                .strip_prefix(root)
                .expect("under assets")
                .to_string_lossy()
                .replace('\\', "/");
            files.push((name, path));
        }
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
