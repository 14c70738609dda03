//! Embeds the Tauri config and generates an `allow-…` permission for each app command, so the
//! capability in `tauri.conf.json` grants exactly the commands the UI uses.

include!("command_names.rs");

fn main() {
    println!("cargo:rerun-if-changed=src-tauri/command_names.rs");
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("tauri-build failed");
}
