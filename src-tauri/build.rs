//! Embeds the Tauri config and generates an `allow-…` permission for each app command, so the
//! capability in `tauri.conf.json` grants exactly the commands the UI uses.

/// Every command the shell registers; keep in step with `main.rs`.
const COMMANDS: &[&str] = &[
    "library_info",
    "set_library_folder",
    "list_projects",
    "create_project",
    "update_project",
    "delete_project",
    "list_images",
    "get_image",
    "toggle_favorite",
    "delete_images",
    "move_images",
    "pick_import_paths",
    "import_paths",
    "export_zip",
    "cancel_export",
    "verify_library",
    "repair_library",
    "list_styles",
    "preview_prompt",
    "list_models",
    "submit_job",
    "cancel_job",
    "stop_job",
    "list_jobs",
    "download_model",
    "cancel_model_download",
    "account_status",
    "set_cloud_settings",
    "account_sign_up",
    "account_confirm",
    "account_resend_code",
    "account_log_in",
    "account_forgot_password",
    "account_reset_password",
    "account_sign_out",
    "submit_cloud_job",
];

fn main() {
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("tauri-build failed");
}
