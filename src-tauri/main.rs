//! SelfDiffusion desktop shell: adapts the domain crates to Tauri commands and events.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod cancel;
mod cloud;
mod commands;
mod dialogs;
mod generation;
mod logging;
mod settings;
mod state;

use tauri::Manager;

fn main() {
    tauri::Builder::default()
        .plugin(tauri_plugin_store::Builder::default().build())
        .setup(|app| {
            let guard = logging::init(app.handle());
            app.manage(guard);
            let state = state::AppState::open(app.handle());
            app.manage(state);
            app.manage(generation::Generation::default());
            app.manage(cloud::Cloud::default());
            cloud::resume_pending(app.handle());
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            commands::library_info,
            commands::set_library_folder,
            commands::list_projects,
            commands::create_project,
            commands::update_project,
            commands::delete_project,
            commands::list_images,
            commands::get_image,
            commands::toggle_favorite,
            commands::delete_images,
            commands::move_images,
            commands::pick_import_paths,
            commands::import_paths,
            commands::export_zip,
            commands::cancel_export,
            commands::verify_library,
            commands::repair_library,
            generation::list_styles,
            generation::preview_prompt,
            generation::list_models,
            generation::submit_job,
            generation::cancel_job,
            generation::stop_job,
            generation::list_jobs,
            generation::download_model,
            generation::cancel_model_download,
            cloud::account_status,
            cloud::set_cloud_settings,
            cloud::account_sign_up,
            cloud::account_confirm,
            cloud::account_resend_code,
            cloud::account_log_in,
            cloud::account_forgot_password,
            cloud::account_reset_password,
            cloud::account_sign_out,
            cloud::submit_cloud_job,
        ])
        .run(tauri::generate_context!())
        .unwrap_or_else(|e| {
            eprintln!("SelfDiffusion could not start: {e}");
            std::process::exit(1);
        });
}
