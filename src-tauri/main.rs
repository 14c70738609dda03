//! SelfDiffusion desktop shell: adapts the domain crates to Tauri commands and events.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod cancel;
mod cloud;
mod commands;
mod dialogs;
mod error;
mod events;
mod inputs;
mod jobs;
mod logging;
mod models;
mod settings;
mod state;
mod styles;

use tauri::Manager;

fn main() {
    tauri::Builder::default()
        .plugin(tauri_plugin_store::Builder::default().build())
        .setup(|app| {
            let guard = logging::init(app.handle());
            app.manage(guard);
            let state = state::AppState::open(app.handle());
            app.manage(state);
            app.manage(styles::Styles::default());
            app.manage(models::Downloads::default());
            app.manage(jobs::LocalJobs::default());
            app.manage(cloud::Cloud::default());
            // Restoring the session reads the OS keyring: not on the UI thread.
            let handle = app.handle().clone();
            tauri::async_runtime::spawn_blocking(move || cloud::resume_pending(&handle));
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            commands::library_info,
            commands::set_library_folder,
            commands::default_project,
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
            styles::list_styles,
            styles::preview_prompt,
            models::list_models,
            models::engine_limits,
            models::import_checkpoint,
            models::forget_model,
            models::verify_model,
            models::list_loras,
            models::import_lora,
            models::remove_lora,
            models::download_model,
            models::cancel_model_download,
            jobs::submit_job,
            jobs::cancel_job,
            jobs::stop_job,
            jobs::list_jobs,
            inputs::keep_input,
            inputs::input_info,
            inputs::upscale_image,
            inputs::cancel_upscale,
            inputs::upscaler_info,
            inputs::choose_upscaler,
            cloud::account_status,
            cloud::set_cloud_settings,
            cloud::account_sign_up,
            cloud::account_confirm,
            cloud::account_resend_code,
            cloud::account_log_in,
            cloud::account_log_in_with,
            cloud::account_forgot_password,
            cloud::account_reset_password,
            cloud::account_sign_out,
            cloud::cloud_limits,
            cloud::cloud_api_keys,
            cloud::cloud_create_api_key,
            cloud::cloud_revoke_api_key,
            cloud::submit_cloud_job,
        ])
        .run(tauri::generate_context!())
        .unwrap_or_else(|e| {
            eprintln!("SelfDiffusion could not start: {e}");
            std::process::exit(1);
        });
}

#[cfg(test)]
mod command_list {
    //! The list of commands is written once (`command_names.rs`); everything else that names
    //! them is checked against it here.

    use std::collections::BTreeSet;

    include!("command_names.rs");

    fn read(path: &str) -> String {
        let root = env!("CARGO_MANIFEST_DIR");
        std::fs::read_to_string(format!("{root}/{path}")).unwrap()
    }

    fn names() -> BTreeSet<String> {
        let names: BTreeSet<String> = COMMANDS.iter().map(|c| c.to_string()).collect();
        assert_eq!(names.len(), COMMANDS.len(), "a command is listed twice");
        names
    }

    #[test]
    fn the_handler_list_registers_every_command_once() {
        let main = read("src-tauri/main.rs");
        let list = main
            .split("generate_handler![")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .unwrap();
        let handlers: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|path| path.rsplit("::").next().unwrap().to_owned())
            .collect();
        assert_eq!(handlers.len(), COMMANDS.len());
        assert_eq!(handlers.into_iter().collect::<BTreeSet<_>>(), names());
    }

    #[test]
    fn the_capability_grants_exactly_the_commands() {
        let conf: serde_json::Value = serde_json::from_str(&read("tauri.conf.json")).unwrap();
        let granted: BTreeSet<String> = conf["app"]["security"]["capabilities"][0]["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p.as_str()?.strip_prefix("allow-"))
            .map(|p| p.replace('-', "_"))
            .collect();
        assert_eq!(granted, names());
    }

    #[test]
    fn the_ui_invokes_only_registered_commands() {
        let api = read("ui/js/api.js");
        let invoked: BTreeSet<String> = api
            .split("invoke(")
            .skip(1)
            .filter_map(|rest| rest.strip_prefix('\''))
            .filter_map(|rest| rest.split('\'').next())
            .map(str::to_owned)
            .collect();
        assert!(!invoked.is_empty());
        let registered = names();
        let unknown: Vec<&String> = invoked.difference(&registered).collect();
        assert!(
            unknown.is_empty(),
            "the UI invokes unregistered commands: {unknown:?}"
        );
    }

    #[test]
    fn the_ui_declares_the_events_the_shell_emits() {
        let declared = read("ui/js/events.js");
        for event in crate::events::ALL {
            assert!(
                declared.contains(&format!("'{event}'")),
                "ui/js/events.js does not declare {event}"
            );
        }
    }
}
