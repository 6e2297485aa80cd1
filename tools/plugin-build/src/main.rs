//! `plugin-build`: builds every plugin crate into a WebAssembly component the gateway can load.
//!
//! ```text
//! cargo run -p plugin-build --release            # plugins/ and policies/examples/ -> target/plugins/, test-plugins/ and test-plugins-wasip2/ -> target/test-plugins/
//! cargo run -p plugin-build --release -- --force # rebuild even when nothing changed
//!                                                # (and the stock plugins for WIT 0.1.0 -> target/plugins-wit-0.1.0/)
//! ```
//!
//! Steps: pick a wasm toolchain (rustup's `wasm32-unknown-unknown` target where it is installed,
//! otherwise Debian's rustc building std from source, see `scripts/setup-toolchain`); fingerprint
//! each crate (its sources, the SDK, the WIT, Cargo.lock, the toolchain); build the stale crates
//! to core wasm modules in one cargo call; wrap each module into a component; write it
//! atomically (temp file + rename) so a watching gateway
//! never reads half a file.
//!
//! `test-plugins-wasip2/` holds guests built the way a plugin author outside this repository
//! builds one: `cargo build --target wasm32-wasip2` (rustup's target; its linker emits the
//! component, WASI imports included). Without that target they are skipped, loudly.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

const TARGET: &str = "wasm32-unknown-unknown";
const PROFILE: &str = "plugin";

/// A directory of plugin crates and where their components go.
struct Group {
    crates_dir: &'static str,
    out_dir: &'static str,
    /// `wasm32-unknown-unknown` (core module, wrapped here) or `wasm32-wasip2` (a component).
    target: &'static str,
    /// Cargo features the crates are built with ("" = none).
    features: &'static str,
    /// Only these crates of the directory (empty = all).
    only: &'static [&'static str],
}

const WASIP2: &str = "wasm32-wasip2";
/// Python guests: a directory with `app.py` and `plugin.toml` (`world = "..."`), componentized
/// by componentize-py (PyPI).
const PYTHON: &str = "python";

const GROUPS: &[Group] = &[
    Group {
        crates_dir: "plugins",
        out_dir: "target/plugins",
        target: TARGET,
        features: "",
        only: &[],
    },
    Group {
        crates_dir: "test-plugins",
        out_dir: "target/test-plugins",
        target: TARGET,
        features: "",
        only: &[],
    },
    // The worked routing examples of the policy docs: loaded like built-in plugins.
    Group {
        crates_dir: "policies/examples",
        out_dir: "target/plugins",
        target: TARGET,
        features: "",
        only: &[],
    },
    // WASI guests (deny-by-default tests, the Rust wasip2 template).
    Group {
        crates_dir: "test-plugins-wasip2",
        out_dir: "target/test-plugins",
        target: WASIP2,
        features: "",
        only: &[],
    },
    Group {
        crates_dir: "test-plugins-py",
        out_dir: "target/test-plugins",
        target: PYTHON,
        features: "",
        only: &[],
    },
    // The stock plugins built against the frozen WIT 0.1.0 (the SDK's `wit-0-1-0` feature): the
    // gateway's tests serve requests with them to prove plugins built for 0.1.0 keep working.
    Group {
        crates_dir: "plugins",
        out_dir: "target/plugins-wit-0.1.0",
        target: TARGET,
        features: "tollgate-plugin-sdk/wit-0-1-0",
        only: &[
            "auth-apikey",
            "billing-credits",
            "provider-openai",
            "provider-anthropic",
            "retention-metadata-only",
            "retention-retain-all",
            "retention-zero",
            "route-policy",
        ],
    },
];

/// How wasm is compiled on this machine.
enum Toolchain {
    /// rustup with the wasm32-unknown-unknown target installed.
    Rustup,
    /// Debian's rustc (same version as the std sources it ships) building std from source.
    DebianBuildStd,
}

impl Toolchain {
    fn detect() -> Result<Self> {
        let installed = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(TARGET))
            .unwrap_or(false);
        if installed {
            return Ok(Toolchain::Rustup);
        }
        if Path::new("/usr/bin/rustc").exists()
            && Path::new("/usr/lib/rustlib/src/rust").exists()
            && which("wasm-ld-19")
        {
            return Ok(Toolchain::DebianBuildStd);
        }
        bail!(
            "no wasm toolchain: neither rustup's {TARGET} target nor Debian's rustc-web + \
             rust-web-src + lld-19 are installed; run scripts/setup-toolchain"
        )
    }

    fn id(&self) -> String {
        let rustc = match self {
            Toolchain::Rustup => "rustc",
            Toolchain::DebianBuildStd => "/usr/bin/rustc",
        };
        let version = Command::new(rustc)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        format!("{TARGET} {version}")
    }

    fn cargo(&self) -> Command {
        match self {
            Toolchain::Rustup => {
                let mut cmd = Command::new("cargo");
                clean_env(&mut cmd);
                cmd
            }
            Toolchain::DebianBuildStd => {
                let mut cmd = Command::new("/usr/bin/cargo");
                clean_env(&mut cmd);
                cmd.env("RUSTC_BOOTSTRAP", "1")
                    .env("RUSTC", "/usr/bin/rustc")
                    .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", "wasm-ld-19")
                    .args(["-Zbuild-std=std,panic_abort"]);
                cmd
            }
        }
    }
}

/// Drops the variables an outer `cargo run` sets, so the inner build is a plain one.
fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let outer = (key.starts_with("CARGO") && key != "CARGO_HOME")
            || key.starts_with("RUSTUP_TOOLCHAIN")
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTFLAGS")
            || key == "RUSTDOC";
        if outer {
            cmd.env_remove(&key);
        }
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// A plugin crate found on disk.
struct PluginCrate {
    name: String,
    target: &'static str,
    features: &'static str,
    dir: PathBuf,
    out_file: PathBuf,
    stamp_file: PathBuf,
}

fn find_crates(root: &Path) -> Result<Vec<PluginCrate>> {
    let mut crates = Vec::new();
    for group in GROUPS {
        let dir = root.join(group.crates_dir);
        let out = root.join(group.out_dir);
        if !dir.is_dir() {
            continue;
        }
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                let marker = if group.target == PYTHON {
                    "plugin.toml"
                } else {
                    "Cargo.toml"
                };
                p.join(marker).is_file()
            })
            .collect();
        entries.sort();
        entries.retain(|p| {
            group.only.is_empty()
                || p.file_name()
                    .is_some_and(|n| group.only.contains(&n.to_string_lossy().as_ref()))
        });
        for crate_dir in entries {
            let name = crate_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .context("crate dir without a name")?;
            crates.push(PluginCrate {
                target: group.target,
                features: group.features,
                out_file: out.join(format!("{name}.wasm")),
                stamp_file: out.join(".stamps").join(&name),
                name,
                dir: crate_dir,
            });
        }
    }
    Ok(crates)
}

/// Hashes every file under `path` (sorted, with relative names) into `hasher`.
fn hash_tree(hasher: &mut Sha256, path: &Path) -> Result<()> {
    let mut files = BTreeMap::new();
    collect_files(path, path, &mut files)?;
    for (rel, full) in files {
        hasher.update(rel.as_bytes());
        hasher.update(fs::read(&full).with_context(|| format!("reading {}", full.display()))?);
    }
    Ok(())
}

fn collect_files(base: &Path, dir: &Path, out: &mut BTreeMap<String, PathBuf>) -> Result<()> {
    if dir.is_file() {
        out.insert(dir.display().to_string(), dir.to_path_buf());
        return Ok(());
    }
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            collect_files(base, &path, out)?;
        } else {
            let rel = path
                .strip_prefix(base)
                .unwrap_or(&path)
                .display()
                .to_string();
            out.insert(rel, path);
        }
    }
    Ok(())
}

fn fingerprint(root: &Path, krate: &PluginCrate, toolchain_id: &str) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(toolchain_id.as_bytes());
    hasher.update(krate.target.as_bytes());
    hasher.update(krate.features.as_bytes());
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    for shared in ["wit", "plugin-sdk", "Cargo.lock", "Cargo.toml"] {
        hash_tree(&mut hasher, &root.join(shared))?;
    }
    hash_tree(&mut hasher, &krate.dir)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Wraps a core wasm module (with its embedded component-type sections) into a component.
/// Plugins are built for `wasm32-unknown-unknown`: they import nothing but `tollgate:plugin/host`,
/// so no WASI adapter is needed (and the host links no WASI).
fn componentize(module: &[u8]) -> Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .context("reading the core module's component-type sections")?
        .validate(true)
        .encode()
}

/// The custom section the gateway reads a plugin's config schema from.
const SCHEMA_SECTION: &str = "tollgate:config-schema";

fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Appends the crate's `config.schema.json` (when it has one) to the component as the custom
/// section the gateway reads; checked to be JSON here, and against the supported keywords at
/// load.
fn with_schema(dir: &Path, mut component: Vec<u8>) -> Result<Vec<u8>> {
    let path = dir.join("config.schema.json");
    let Ok(schema) = fs::read(&path) else {
        return Ok(component);
    };
    serde_json::from_slice::<serde_json::Value>(&schema)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    let mut body = Vec::new();
    leb128(SCHEMA_SECTION.len(), &mut body);
    body.extend_from_slice(SCHEMA_SECTION.as_bytes());
    body.extend_from_slice(&schema);
    component.push(0); // custom section id
    leb128(body.len(), &mut component);
    component.extend_from_slice(&body);
    Ok(component)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("output path without a directory")?;
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// componentize-py: `$COMPONENTIZE_PY`, else the project's `.venv`, else `PATH`.
fn componentize_py(root: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("COMPONENTIZE_PY") {
        return Some(PathBuf::from(p));
    }
    let venv = root.join(".venv/bin/componentize-py");
    if venv.is_file() {
        return Some(venv);
    }
    which("componentize-py").then(|| PathBuf::from("componentize-py"))
}

/// The `world = "..."` of a Python guest's `plugin.toml`.
fn python_world(dir: &Path) -> Result<String> {
    let text = fs::read_to_string(dir.join("plugin.toml"))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("world"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_string())
        .next()
        .with_context(|| format!("{}: plugin.toml names no world", dir.display()))
}

/// Builds the Python guests (one componentize-py run each, ~10 s).
fn build_python(root: &Path, batch: &[&(&PluginCrate, String)]) -> Result<()> {
    let Some(tool) = componentize_py(root) else {
        eprintln!(
            "plugin-build: SKIPPED {} Python guest(s): componentize-py not found (pip install \
             componentize-py, or the project's .venv: scripts/test creates it)",
            batch.len()
        );
        return Ok(());
    };
    for (krate, print) in batch {
        let world = python_world(&krate.dir)?;
        let dir = krate
            .out_file
            .parent()
            .context("output without a directory")?;
        fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{}.py.tmp", krate.name));
        let status = Command::new(&tool)
            .current_dir(root)
            .args(["-d", "wit", "-w", &world, "componentize", "-p"])
            .arg(&krate.dir)
            .args(["app", "-o"])
            .arg(&tmp)
            .status()
            .with_context(|| format!("running {}", tool.display()))?;
        if !status.success() {
            bail!("componentize-py failed for {} ({status})", krate.name);
        }
        let component = with_schema(&krate.dir, fs::read(&tmp)?)?;
        fs::remove_file(&tmp)?;
        write_atomically(&krate.out_file, &component)?;
        write_atomically(&krate.stamp_file, print.as_bytes())?;
        println!(
            "plugin-build: {} (Python) -> {} ({} KB)",
            krate.name,
            krate.out_file.display(),
            fs::metadata(&krate.out_file)?.len() / 1024
        );
    }
    Ok(())
}

/// Whether rustup has `target` installed.
fn rustup_has(target: &str) -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == target)
        })
        .unwrap_or(false)
}

fn workspace_root() -> Result<PathBuf> {
    // tools/plugin-build -> workspace root
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .context("cannot locate the workspace root")
}

fn main() -> Result<()> {
    let force = std::env::args().any(|a| a == "--force");
    let root = workspace_root()?;
    let toolchain = Toolchain::detect()?;
    let toolchain_id = toolchain.id();
    let crates = find_crates(&root)?;

    let mut stale = Vec::new();
    for krate in &crates {
        let print = fingerprint(&root, krate, &toolchain_id)?;
        let current = fs::read_to_string(&krate.stamp_file).unwrap_or_default();
        if force || current.trim() != print || !krate.out_file.is_file() {
            stale.push((krate, print));
        } else {
            println!("plugin-build: {} unchanged", krate.name);
        }
    }
    if stale.is_empty() {
        println!("plugin-build: all {} plugins up to date", crates.len());
        return Ok(());
    }

    let target_dir = root.join("target").join("wasm");
    let python: Vec<_> = stale.iter().filter(|(k, _)| k.target == PYTHON).collect();
    if !python.is_empty() {
        build_python(&root, &python)?;
    }
    let mut batches: Vec<(&str, &str)> = stale
        .iter()
        .filter(|(k, _)| k.target != PYTHON)
        .map(|(k, _)| (k.target, k.features))
        .collect();
    batches.sort();
    batches.dedup();
    // One cargo call per target and feature set (a crate built with other features is a
    // different artifact at the same path: copied out before the next batch).
    for (target, features) in batches {
        let batch: Vec<_> = stale
            .iter()
            .filter(|(k, _)| k.target == target && k.features == features)
            .collect();
        if batch.is_empty() {
            continue;
        }
        let mut cargo = if target == WASIP2 {
            if !rustup_has(WASIP2) {
                eprintln!(
                    "plugin-build: SKIPPED {} {WASIP2} guest(s): rustup's {WASIP2} target is not \
                     installed (scripts/setup-toolchain installs it)",
                    batch.len()
                );
                continue;
            }
            let mut cmd = Command::new("cargo");
            clean_env(&mut cmd);
            cmd
        } else {
            toolchain.cargo()
        };
        println!(
            "plugin-build: building {} plugin(s) for {target} with {toolchain_id}",
            batch.len()
        );
        cargo
            .current_dir(&root)
            .args(["build", "--profile", PROFILE, "--target", target])
            .arg("--target-dir")
            .arg(&target_dir);
        for (krate, _) in &batch {
            cargo.args(["-p", &krate.name]);
        }
        if !features.is_empty() {
            cargo.args(["--features", features]);
        }
        let status = cargo.status().context("running cargo for the wasm build")?;
        if !status.success() {
            bail!("cargo build for {target} failed ({status})");
        }
        for (krate, print) in batch {
            let built = target_dir
                .join(target)
                .join(PROFILE)
                .join(format!("{}.wasm", krate.name.replace('-', "_")));
            let bytes = fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
            // wasip2's linker already wrote a component; a core module is wrapped here.
            let component = if target == WASIP2 {
                bytes
            } else {
                componentize(&bytes).with_context(|| format!("componentizing {}", krate.name))?
            };
            let component = with_schema(&krate.dir, component)?;
            write_atomically(&krate.out_file, &component)?;
            write_atomically(&krate.stamp_file, print.as_bytes())?;
            println!(
                "plugin-build: {} -> {} ({} KB)",
                krate.name,
                krate.out_file.display(),
                component.len() / 1024
            );
        }
    }
    Ok(())
}
