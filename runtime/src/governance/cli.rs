//! The `runtime keys` and `runtime plugin` commands: what a vendor runs to
//! scaffold, pack, sign, verify and publish a plugin.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::bundle::Bundle;
use super::checks::check_bundle_file;
use super::manifest::Manifest;
use super::signing::{SigningKey, VendorKey, encode_public_key, key_id, parse_public_key};
use crate::config::Limits;
use crate::directory::validate_id;
use crate::engine::PluginEngine;

/// `runtime keys ...`
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Generate a vendor signing key (Ed25519). Prints the public key to
    /// register with the ministry.
    New {
        /// Private key file to write (PEM, mode 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
}

/// `runtime plugin ...`
#[derive(Subcommand)]
pub enum PluginCommand {
    /// Scaffold a plugin crate (Cargo.toml, plugin.toml, src/lib.rs).
    New {
        /// Plugin id, also the crate name: a-z, 0-9 and '-'.
        name: String,
        /// Directory to create the crate in; a guest workspace there gains the
        /// crate as a member.
        #[arg(long, default_value = "plugins")]
        dir: PathBuf,
        /// Your vendor id, as registered with the ministry.
        #[arg(long, default_value = "my-vendor")]
        vendor: String,
    },
    /// Pack a manifest and a component into an unsigned bundle.
    Pack {
        #[arg(long)]
        manifest: PathBuf,
        #[arg(long)]
        component: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a bundle in place with a vendor key.
    Sign {
        bundle: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Run every submission check offline and print the report.
    Verify {
        bundle: PathBuf,
        /// The vendor's public key (base64 or hex, or a file holding it).
        /// Without it, the signature is checked against the key the bundle
        /// carries, which proves integrity but not who signed.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Submit a bundle to a VTelehealth server for review.
    Publish {
        bundle: PathBuf,
        /// Base URL of the server, e.g. https://vtelehealth.example.vn
        #[arg(long, env = "VTH_SERVER")]
        server: String,
        /// Vendor access token.
        #[arg(long, env = "VTH_TOKEN", hide_env_values = true)]
        token: String,
    },
}

/// Run a `keys` command.
pub fn run_keys(command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::New { out } => keys_new(&out),
    }
}

/// Run a `plugin` command.
pub async fn run_plugin(command: PluginCommand) -> Result<()> {
    match command {
        PluginCommand::New { name, dir, vendor } => plugin_new(&name, &dir, &vendor),
        PluginCommand::Pack {
            manifest,
            component,
            out,
        } => plugin_pack(&manifest, &component, &out),
        PluginCommand::Sign { bundle, key } => plugin_sign(&bundle, &key),
        PluginCommand::Verify { bundle, public_key } => {
            tokio::task::spawn_blocking(move || plugin_verify(&bundle, public_key.as_deref()))
                .await
                .context("verify task")?
        }
        PluginCommand::Publish {
            bundle,
            server,
            token,
        } => plugin_publish(&bundle, &server, &token).await,
    }
}

fn keys_new(out: &Path) -> Result<()> {
    let key = SigningKey::generate()?;
    let public = encode_public_key(&key.public_key());
    let public_path = public_key_path(out);
    if public_path.exists() {
        bail!(
            "{} already exists; not overwriting it",
            public_path.display()
        );
    }
    write_new_file(out, key.to_pem()?.as_bytes(), true)?;
    write_new_file(&public_path, format!("{public}\n").as_bytes(), false)?;
    println!("private key: {} (keep it secret)", out.display());
    println!("public key:  {public}");
    println!("key id:      {}", key.key_id());
    println!(
        "Register the public key ({}) with the ministry under your vendor id.",
        public_path.display()
    );
    Ok(())
}

fn public_key_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Create `path`, refusing to replace an existing file; `secret` files are
/// created readable by their owner only.
fn write_new_file(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    // create_new: an existing key is never overwritten, even in a race.
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!("{} already exists; not overwriting it", path.display())
        } else {
            anyhow::anyhow!("creating {}: {e}", path.display())
        }
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn plugin_new(name: &str, dir: &Path, vendor: &str) -> Result<()> {
    validate_id(name).map_err(|e| anyhow::anyhow!("plugin name: {e}"))?;
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        bail!("plugin name must start with a letter (it is also the crate name)");
    }
    validate_id(vendor).map_err(|e| anyhow::anyhow!("--vendor: {e}"))?;
    let crate_dir = dir.join(name);
    if crate_dir.exists() {
        bail!("{} already exists", crate_dir.display());
    }
    std::fs::create_dir_all(crate_dir.join("src"))
        .with_context(|| format!("creating {}", crate_dir.display()))?;
    let files = [
        ("Cargo.toml", scaffold_cargo_toml(name)),
        ("plugin.toml", scaffold_manifest(name, vendor)),
        ("src/lib.rs", scaffold_lib_rs(name)),
    ];
    for (file, text) in &files {
        write_new_file(&crate_dir.join(file), text.as_bytes(), false)?;
    }
    // The scaffold must itself be a valid manifest.
    Manifest::parse(&files[1].1).context("scaffolded plugin.toml")?;
    println!("created {}", crate_dir.display());
    let workspace = dir.join("Cargo.toml");
    if add_workspace_member(&workspace, name)? {
        println!("added \"{name}\" to the members of {}", workspace.display());
    } else {
        println!(
            "note: add the crate to a guest workspace that defines `[workspace.package]` and \
             `vtelehealth-plugin-sdk` (like plugins/Cargo.toml in the VTelehealth repository)"
        );
    }
    println!(
        "next: cargo xtask build-plugins, then runtime plugin pack --manifest {}/plugin.toml --component target/plugins/{name}.wasm --out {name}.vtpkg",
        crate_dir.display()
    );
    Ok(())
}

/// Insert `name` as the first entry of the `members = [` list of a workspace
/// manifest. Returns false when `path` holds no such list.
fn add_workspace_member(path: &Path, name: &str) -> Result<bool> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(false);
    };
    let Some(at) = text.find("members = [") else {
        return Ok(false);
    };
    let at = at + "members = [".len();
    let mut updated = String::with_capacity(text.len() + name.len() + 16);
    updated.push_str(&text[..at]);
    updated.push_str(&format!("\n    \"{name}\","));
    updated.push_str(&text[at..]);
    std::fs::write(path, updated).with_context(|| format!("updating {}", path.display()))?;
    Ok(true)
}

fn scaffold_cargo_toml(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
description = "VTelehealth plugin {name}"
edition.workspace = true
rust-version.workspace = true
license.workspace = true
publish.workspace = true

[lib]
crate-type = ["cdylib"]

[dependencies]
vtelehealth-plugin-sdk.workspace = true

[lints]
workspace = true
"#
    )
}

fn scaffold_manifest(name: &str, vendor: &str) -> String {
    format!(
        r#"# The plugin's manifest: see docs/bundle-format.md.
id = "{name}"
version = "0.1.0"
vendor = "{vendor}"
kind = "workflow"                 # workflow | commerce | his-adapter
# Interfaces the plugin imports; `log` is used by the SDK's panic hook.
# Scoped requests look like "kv:settings".
capabilities = ["log"]

[description]
vi = "Mô tả ngắn bằng tiếng Việt."
en = "A short description in English."

# Every route the plugin serves, and to whom: the host refuses any other.
[[routes]]
path = "/"
methods = ["GET"]
roles = ["practitioner"]
"#
    )
}

fn scaffold_lib_rs(name: &str) -> String {
    format!(
        r#"//! {name}: a VTelehealth plugin.
use vtelehealth_plugin_sdk::{{Error, Plugin, Request, Response, export_plugin, json}};

struct App;

impl Plugin for App {{
    fn handle(req: Request) -> Result<Response, Error> {{
        match (req.method(), req.segments().as_slice()) {{
            ("GET", []) => Ok(Response::ok_json(&json!({{
                "plugin": "{name}",
                "vi": "Xin chào!",
                "en": "Hello!",
            }}))),
            _ => Err(Error::not_found(format!("no page {{}}", req.path()))),
        }}
    }}
}}

export_plugin!(App);
"#
    )
}

fn plugin_pack(manifest: &Path, component: &Path, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let parsed = Manifest::parse(&text)
        .with_context(|| format!("invalid manifest {}", manifest.display()))?;
    let bytes =
        std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    let bundle = Bundle::new(text, bytes);
    write_new_file(out, &bundle.to_json(), false)?;
    println!(
        "packed {} {} into {} (unsigned; sign it with `runtime plugin sign`)",
        parsed.id,
        parsed.version,
        out.display()
    );
    Ok(())
}

fn read_bundle(path: &Path) -> Result<Bundle> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Bundle::from_json(&bytes).with_context(|| format!("reading {}", path.display()))
}

fn plugin_sign(path: &Path, key: &Path) -> Result<()> {
    let key = SigningKey::load(key)?;
    let mut bundle = read_bundle(path)?;
    let manifest = Manifest::parse(&bundle.manifest).context("the bundle's manifest")?;
    key.sign(&mut bundle);
    // Write beside and rename, so an interrupted write leaves the bundle intact.
    let tmp = path.with_extension("vtpkg.tmp");
    std::fs::write(&tmp, bundle.to_json())
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "signed {} {} (vendor {}) with key {}",
        manifest.id,
        manifest.version,
        manifest.vendor,
        key.key_id()
    );
    Ok(())
}

fn plugin_verify(path: &Path, public_key: Option<&str>) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let vendor = Bundle::from_json(&bytes)
        .ok()
        .and_then(|b| Manifest::parse_structure(&b.manifest).ok())
        .map(|m| m.vendor)
        .unwrap_or_default();
    let mut caveat = None;
    let keys = match public_key {
        Some(text) => {
            let text = match std::fs::read_to_string(text) {
                Ok(contents) => contents,
                Err(_) => text.to_owned(),
            };
            vec![VendorKey::new(vendor, parse_public_key(&text)?)]
        }
        None => {
            caveat = Some(
                "the signature was checked against the public key the bundle carries: this \
                 proves the bundle is intact, not who signed it (pass --public-key; the server \
                 checks the vendor's registered keys)",
            );
            embedded_key(&bytes, vendor)
        }
    };
    let engine = PluginEngine::new(&Limits::default(), None)?;
    let (bundle, report) = check_bundle_file(&engine, &bytes, &keys);
    println!("{}", path.display());
    if let Some(m) = bundle.and_then(|b| Manifest::parse_structure(&b.manifest).ok()) {
        println!(
            "  plugin {} {} by {} ({})",
            m.id,
            m.version,
            m.vendor,
            m.kind.name()
        );
        for line in m.describe_capabilities() {
            println!("  requests {line}");
        }
    }
    println!("{report}");
    if let Some(caveat) = caveat {
        println!("note: {caveat}");
    }
    if !report.passed {
        bail!("{} failed verification", path.display());
    }
    Ok(())
}

/// The key a signed bundle carries, when it matches the key id it names.
fn embedded_key(bytes: &[u8], vendor: String) -> Vec<VendorKey> {
    let Some(sig) = Bundle::from_json(bytes).ok().and_then(|b| b.signature) else {
        return Vec::new();
    };
    match parse_public_key(&sig.public_key) {
        Ok(raw) if key_id(&raw) == sig.key_id => vec![VendorKey::new(vendor, raw)],
        _ => Vec::new(),
    }
}

async fn plugin_publish(path: &Path, server: &str, token: &str) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let bundle =
        Bundle::from_json(&bytes).with_context(|| format!("reading {}", path.display()))?;
    if bundle.signature.is_none() {
        bail!(
            "{} is not signed: run `runtime plugin sign` first",
            path.display()
        );
    }
    // reqwest is built without a default TLS crypto provider; use aws-lc-rs.
    // An error only means a provider is installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let url = format!("{}/api/v1/plugin-versions", server.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(bytes)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    let shown = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(body);
    println!("{status}\n{shown}");
    if !status.is_success() {
        bail!("the server refused the bundle ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaffold_is_a_valid_manifest_and_member() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[workspace]\nmembers = [\n    \"hello\",\n]\n",
        )
        .expect("write");
        plugin_new("my-plugin", dir.path(), "acme").expect("scaffold");
        let ws = std::fs::read_to_string(dir.path().join("Cargo.toml")).expect("read");
        assert!(ws.contains("\"my-plugin\",\n    \"hello\""), "{ws}");
        assert!(plugin_new("my-plugin", dir.path(), "acme").is_err());
        assert!(plugin_new("Bad", dir.path(), "acme").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("vendor.key");
        keys_new(&key).expect("new key");
        let mode = std::fs::metadata(&key).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(SigningKey::load(&key).is_ok());
        assert!(public_key_path(&key).is_file());
        let err = keys_new(&key).expect_err("exists").to_string();
        assert!(err.contains("already exists"), "{err}");
    }
}
