//! The cloud in the app: the cloud service settings, the account (sign up, confirm, log in,
//! forgot password, sign out) and cloud jobs, which share the job list with local ones and land
//! in the same library. Everything here adapts `selfdiffusion-cloud` to commands and events.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use selfdiffusion_cloud::{
    follow_cloud_job, follow_cloud_upscale, needs_refresh, restored, run_cloud_job,
    upscale_in_cloud, worth_resuming, Accounts, ApiKeyInfo, CloudClient, CloudError, CloudJobEvent,
    CloudSettings, CognitoConfig, CreatedApiKey, GenerateRequest, JobStatus, Limits, PendingJob,
    PendingJobs, RefreshStore, Status, StyleRef, SubmittedJob, SubmittedUpscale, Tokens,
    UpscaleEvent,
};
use selfdiffusion_library::{ImageDetail, Library};
use selfdiffusion_queue::JobState;
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Emitter, Manager, State};

use crate::error::{blocking, CmdResult, CommandError, ErrorKind};
use crate::events;
use crate::settings;
use crate::state::AppState;
use crate::styles::Styles;

/// How long a cloud job is followed before giving up.
const JOB_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A signed-in session.
struct Session {
    username: String,
    client: Arc<CloudClient>,
}

/// A cloud job as the job list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CloudJobInfo {
    id: u64,
    backend: &'static str,
    project_id: i64,
    /// The prompt as sent (the server applies the styles).
    prompt: String,
    /// What the user typed.
    user_prompt: String,
    count: usize,
    #[serde(flatten)]
    state: JobState,
    images: Vec<i64>,
    /// 0..1 when the server reports it (else the UI shows a spinner).
    progress: Option<f64>,
}

struct CloudJob {
    info: CloudJobInfo,
    cancel: Arc<AtomicBool>,
}

/// The account, its session and the cloud jobs of this run.
#[derive(Default)]
pub struct Cloud {
    accounts: Mutex<Option<(CloudSettings, Arc<Accounts>)>>,
    session: Mutex<Option<Arc<Session>>>,
    jobs: Mutex<Vec<CloudJob>>,
    next_id: AtomicU64,
    /// Server job ids being followed in this run (so a resume never follows one twice).
    following: Mutex<std::collections::HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn session_store(app: &AppHandle) -> CmdResult<RefreshStore> {
    app.path()
        .app_config_dir()
        .map(|d| RefreshStore::new(d.join("session.json")))
        .map_err(|e| CommandError::failed(format!("no configuration folder: {e}")))
}

impl Cloud {
    /// The account client for the current settings.
    fn accounts(&self, app: &AppHandle) -> CmdResult<(CloudSettings, Arc<Accounts>)> {
        let settings = settings::cloud(app);
        let mut cached = lock(&self.accounts);
        if let Some((s, a)) = cached.as_ref() {
            if *s == settings {
                return Ok((s.clone(), a.clone()));
            }
        }
        let config: CognitoConfig = settings.cognito().map_err(CommandError::invalid)?;
        let accounts = Arc::new(Accounts::new(config));
        *cached = Some((settings.clone(), accounts.clone()));
        Ok((settings, accounts))
    }

    /// The session: the one in memory, or one restored from the stored refresh token.
    fn session(&self, app: &AppHandle) -> Option<Arc<Session>> {
        let mut session = lock(&self.session);
        if session.is_none() {
            let (username, refresh) = session_store(app).ok()?.load()?;
            let (settings, accounts) = self.accounts(app).ok()?;
            let client =
                CloudClient::new(&settings.api_url, accounts, restored(&username, &refresh));
            *session = Some(Arc::new(Session {
                username,
                client: Arc::new(client),
            }));
        }
        session.clone()
    }

    fn update(&self, app: &AppHandle, id: u64, change: impl FnOnce(&mut CloudJobInfo)) {
        let info = {
            let mut jobs = lock(&self.jobs);
            let Some(job) = jobs.iter_mut().find(|j| j.info.id == id) else {
                return;
            };
            change(&mut job.info);
            job.info.clone()
        };
        let _ = app.emit(events::JOB_CHANGED, info);
    }

    /// The signed-in session, or an error that says to log in.
    fn signed_in(&self, app: &AppHandle) -> CmdResult<Arc<Session>> {
        self.session(app).ok_or_else(|| {
            CommandError::new(
                ErrorKind::Unauthorized,
                "log in to use the cloud (Account in the sidebar)",
            )
        })
    }

    /// The signed-in account's client, or an error that says to log in.
    pub(crate) fn client(&self, app: &AppHandle) -> CmdResult<Arc<CloudClient>> {
        Ok(self.signed_in(app)?.client.clone())
    }

    /// Every cloud job of this run, oldest first.
    pub fn jobs(&self) -> Vec<CloudJobInfo> {
        lock(&self.jobs).iter().map(|j| j.info.clone()).collect()
    }

    /// Stops following cloud job `id`.
    pub fn cancel(&self, id: u64) -> CmdResult<()> {
        let jobs = lock(&self.jobs);
        let job = jobs
            .iter()
            .find(|j| j.info.id == id)
            .ok_or_else(|| CommandError::new(ErrorKind::NotFound, format!("no cloud job {id}")))?;
        job.cancel.store(true, Ordering::Relaxed);
        Ok(())
    }
}

/// What the account screen shows.
#[derive(Serialize)]
pub struct AccountStatus {
    /// Whether the cloud service is set up.
    configured: bool,
    /// Why it is not, when it is not.
    problem: Option<String>,
    /// The signed-in user.
    username: Option<String>,
    /// The service settings.
    settings: CloudSettings,
}

fn status(app: &AppHandle, cloud: &Cloud) -> AccountStatus {
    let settings = settings::cloud(app);
    let problem = settings.cognito().err();
    AccountStatus {
        configured: problem.is_none(),
        problem,
        username: cloud.session(app).map(|s| s.username.clone()),
        settings,
    }
}

/// Whether the cloud service is set up, and who is signed in (the session is restored from the
/// OS keyring on first use, so this runs off the UI thread).
#[tauri::command]
pub async fn account_status(app: AppHandle) -> CmdResult<AccountStatus> {
    blocking(move || Ok(status(&app, &app.state::<Cloud>()))).await
}

/// Saves the cloud service settings (a change of service signs out).
#[tauri::command]
pub async fn set_cloud_settings(
    app: AppHandle,
    settings: CloudSettings,
) -> CmdResult<AccountStatus> {
    blocking(move || {
        let cloud = app.state::<Cloud>();
        let settings = settings.trimmed();
        settings.cognito().map_err(CommandError::invalid)?;
        if settings != settings::cloud(&app) {
            settings::set_cloud(&app, &settings).map_err(CommandError::failed)?;
            *lock(&cloud.session) = None;
            session_store(&app)?.clear()?;
        }
        Ok(status(&app, &cloud))
    })
    .await
}

/// Creates an account; a confirmation code is emailed.
#[tauri::command]
pub async fn account_sign_up(
    app: AppHandle,
    cloud: State<'_, Cloud>,
    email: String,
    username: String,
    password: String,
) -> CmdResult<()> {
    let (_, accounts) = cloud.accounts(&app)?;
    accounts.sign_up(&email, &username, &password).await?;
    Ok(())
}

/// Confirms a new account with the emailed code.
#[tauri::command]
pub async fn account_confirm(
    app: AppHandle,
    cloud: State<'_, Cloud>,
    username: String,
    code: String,
) -> CmdResult<()> {
    let (_, accounts) = cloud.accounts(&app)?;
    accounts.confirm_sign_up(&username, &code).await?;
    Ok(())
}

/// Emails a new confirmation code.
#[tauri::command]
pub async fn account_resend_code(
    app: AppHandle,
    cloud: State<'_, Cloud>,
    username: String,
) -> CmdResult<()> {
    let (_, accounts) = cloud.accounts(&app)?;
    accounts.resend_code(&username).await?;
    Ok(())
}

/// Logs in, keeps the refresh token (keyring or private file) and follows the account's pending
/// cloud jobs.
#[tauri::command]
pub async fn account_log_in(
    app: AppHandle,
    cloud: State<'_, Cloud>,
    username: String,
    password: String,
) -> CmdResult<AccountStatus> {
    let (settings, accounts) = cloud.accounts(&app)?;
    let tokens = accounts.log_in(&username, &password).await?;
    sign_in(&app, &cloud, &settings, accounts, tokens)
}

/// Keeps a new session (the refresh token in the keyring or a private file) and follows the
/// account's pending cloud jobs.
fn sign_in(
    app: &AppHandle,
    cloud: &Cloud,
    settings: &CloudSettings,
    accounts: Arc<Accounts>,
    tokens: Tokens,
) -> CmdResult<AccountStatus> {
    session_store(app)?.save(&tokens)?;
    let session = Session {
        username: tokens.username().to_owned(),
        client: Arc::new(CloudClient::new(&settings.api_url, accounts, tokens)),
    };
    *lock(&cloud.session) = Some(Arc::new(session));
    tracing::info!("signed in");
    resume_pending(app);
    Ok(status(app, cloud))
}

/// How long a browser login may take.
const BROWSER_LOGIN: Duration = Duration::from_secs(5 * 60);

/// Logs in through the pool's hosted UI in the system browser with `provider` (e.g. `Google`):
/// opens the page, waits for the browser to come back to the app's loopback address, then
/// keeps the session as a password login does.
#[tauri::command]
pub async fn account_log_in_with(
    app: AppHandle,
    cloud: State<'_, Cloud>,
    provider: String,
) -> CmdResult<AccountStatus> {
    let (settings, accounts) = cloud.accounts(&app)?;
    let cognito = settings.cognito().map_err(CommandError::invalid)?;
    let ui = settings.hosted_ui(&cognito).ok_or_else(|| {
        CommandError::invalid(
            "this cloud service has no hosted login page: set its domain under Account → Cloud service",
        )
    })?;
    let provider = Some(provider.trim()).filter(|p| !p.is_empty());
    let pending = ui.begin(provider).await?;
    open::that_detached(pending.url()).map_err(|e| {
        CommandError::failed(format!(
            "cannot open the browser ({e}); open this address yourself: {}",
            pending.url()
        ))
    })?;
    let tokens = pending.finish(BROWSER_LOGIN).await?;
    sign_in(&app, &cloud, &settings, accounts, tokens)
}

/// Emails a password reset code.
#[tauri::command]
pub async fn account_forgot_password(
    app: AppHandle,
    cloud: State<'_, Cloud>,
    username: String,
) -> CmdResult<()> {
    let (_, accounts) = cloud.accounts(&app)?;
    accounts.forgot_password(&username).await?;
    Ok(())
}

/// Sets a new password with the emailed reset code.
#[tauri::command]
pub async fn account_reset_password(
    app: AppHandle,
    cloud: State<'_, Cloud>,
    username: String,
    code: String,
    password: String,
) -> CmdResult<()> {
    let (_, accounts) = cloud.accounts(&app)?;
    accounts
        .confirm_forgot_password(&username, &code, &password)
        .await?;
    Ok(())
}

/// Signs out everywhere (best effort when offline) and forgets the session on this computer.
#[tauri::command]
pub async fn account_sign_out(app: AppHandle, cloud: State<'_, Cloud>) -> CmdResult<AccountStatus> {
    let session = lock(&cloud.session).take();
    session_store(&app)?.clear()?;
    if let (Some(session), Ok((_, accounts))) = (session, cloud.accounts(&app)) {
        let mut tokens = session.client.tokens().await;
        // A session restored from the keyring has no access token yet: refresh to get one.
        if needs_refresh(&tokens, SystemTime::now()) {
            if let Ok(fresh) = accounts.refresh(&tokens).await {
                tokens = fresh;
            }
        }
        if let Err(e) = accounts.sign_out(&tokens).await {
            tracing::warn!(error = %e, "global sign-out failed; signed out on this computer only");
        }
    }
    Ok(status(&app, &cloud))
}

/// What the generate form sends for a cloud job.
#[derive(Deserialize)]
pub struct CloudJobParams {
    project_id: i64,
    prompt: String,
    negative_prompt: String,
    styles: Vec<String>,
    steps: u32,
    guidance: f64,
    seed: Option<u64>,
    width: u32,
    height: u32,
    count: u32,
    /// An image to start from (img2img, inpainting, outpainting), sent with the request.
    #[serde(default)]
    init: Option<crate::inputs::InputParams>,
    /// A second pass at a larger size ("hires fix").
    #[serde(default)]
    hires: Option<selfdiffusion_recipe::HiresFix>,
}

/// A queued cloud job.
#[derive(Serialize)]
pub struct CloudSubmitted {
    id: u64,
    backend: &'static str,
    seed: u64,
}

/// The signed-in session, restored off the async runtime (the keyring may block).
async fn signed_in(app: &AppHandle) -> CmdResult<Arc<Session>> {
    let app = app.clone();
    blocking(move || app.state::<Cloud>().signed_in(&app)).await
}

/// What requests the signed-in account's cloud server takes (from its `/health`).
#[tauri::command]
pub async fn cloud_limits(app: AppHandle) -> CmdResult<Limits> {
    Ok(signed_in(&app).await?.client.limits().await?)
}

/// The signed-in account's API keys on its cloud server (for scripts using the `/v1` API).
#[tauri::command]
pub async fn cloud_api_keys(app: AppHandle) -> CmdResult<Vec<ApiKeyInfo>> {
    Ok(signed_in(&app).await?.client.api_keys().await?)
}

/// Longest API key name.
const MAX_KEY_NAME: usize = 100;

/// Makes an API key named `name`; the answer holds the key, shown this once.
#[tauri::command]
pub async fn cloud_create_api_key(app: AppHandle, name: String) -> CmdResult<CreatedApiKey> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_KEY_NAME {
        return Err(CommandError::invalid(format!(
            "name the key (1 to {MAX_KEY_NAME} characters), e.g. \"nightly script\""
        )));
    }
    Ok(signed_in(&app).await?.client.create_api_key(name).await?)
}

/// Revokes the signed-in account's API key `id`: requests made with it are refused from now on.
#[tauri::command]
pub async fn cloud_revoke_api_key(app: AppHandle, id: String) -> CmdResult<()> {
    Ok(signed_in(&app).await?.client.revoke_api_key(&id).await?)
}

/// Sends a job to the cloud and follows it in the background; its images go into the project.
/// Built-in styles go by name, the user's own as their text; the server applies them.
#[tauri::command]
pub async fn submit_cloud_job(app: AppHandle, params: CloudJobParams) -> CmdResult<CloudSubmitted> {
    blocking(move || {
        let cloud = app.state::<Cloud>();
        let session = cloud.signed_in(&app)?;
        let library = app.state::<AppState>().library()?;
        library.project(params.project_id)?;
        if params.prompt.trim().is_empty() && params.styles.is_empty() {
            return Err(CommandError::invalid(
                "the prompt is empty: write one or pick a style that fills it",
            ));
        }
        let builtin = selfdiffusion_styles::builtin();
        let styles: Vec<StyleRef> = app
            .state::<Styles>()
            .resolve(&app, &params.styles)?
            .into_iter()
            .map(
                |style| match selfdiffusion_styles::find(&builtin, &style.name) {
                    Some(_) => StyleRef::Named(style.name),
                    None => StyleRef::Inline(style),
                },
            )
            .collect();
        let seed = params
            .seed
            .unwrap_or_else(selfdiffusion_recipe::random_seed);
        let mut request = GenerateRequest {
            prompt: params.prompt.trim().to_owned(),
            samples: params.count,
            negative_prompt: Some(params.negative_prompt.trim().to_owned())
                .filter(|n| !n.is_empty()),
            styles: Some(styles).filter(|s| !s.is_empty()),
            steps: Some(params.steps),
            guidance: Some(params.guidance),
            seed: Some(seed),
            width: Some(params.width),
            height: Some(params.height),
            model: None,
            // <lora:name:w> tags in the prompt name the server's LoRAs; it reads them itself.
            loras: None,
            lora_scale: None,
            hires: params.hires,
            ..GenerateRequest::default()
        };
        if let Some(init) = &params.init {
            init.send_with(&library, &mut request)?;
        }
        let id = spawn_job(
            &app,
            &cloud,
            session,
            library,
            Start::New {
                request,
                project_id: params.project_id,
            },
        );
        Ok(CloudSubmitted {
            id,
            backend: "cloud",
            seed,
        })
    })
    .await
}

/// How a cloud job starts in this run.
enum Start {
    /// Submit a new request for a project.
    New {
        request: GenerateRequest,
        project_id: i64,
    },
    /// Follow a job submitted in an earlier run.
    Resume(SubmittedJob),
    /// Follow an upscale submitted in an earlier run.
    ResumeUpscale(SubmittedUpscale),
}

fn pending_jobs(app: &AppHandle) -> Option<PendingJobs> {
    app.path()
        .app_config_dir()
        .ok()
        .map(|d| PendingJobs::new(d.join("cloud-jobs.json")))
}

impl Cloud {
    /// Writes submitted `job` down in `pending` (so a restart follows it) and marks it followed
    /// in this run. Returns its server id.
    fn started_following(&self, pending: &Option<PendingJobs>, job: PendingJob) -> String {
        let job_id = job.job_id().to_owned();
        tracing::info!(%job_id, "cloud job submitted");
        if let Some(Err(e)) = pending.as_ref().map(|p| p.add(&job)) {
            tracing::warn!(error = %e, "cannot write the pending cloud job down");
        }
        lock(&self.following).insert(job_id.clone());
        job_id
    }

    /// Crosses server job `job_id` off `pending` unless it ended in a way worth following again
    /// after a restart, then no longer marks it followed.
    fn stopped_following<T>(
        &self,
        pending: &Option<PendingJobs>,
        job_id: &str,
        outcome: &Result<T, CloudError>,
    ) {
        if let Some(pending) = pending {
            if !worth_resuming(outcome) {
                if let Err(e) = pending.remove(job_id) {
                    tracing::warn!(error = %e, "cannot cross the cloud job off");
                }
            }
        }
        lock(&self.following).remove(job_id);
    }
}

/// Makes library image `image_id` `factor` times larger on the signed-in account's server
/// (`upscale_image` in the cloud), writing the job down while the server works: closed before
/// the larger image comes back, the app adds it after its next start.
pub(crate) async fn upscale(
    app: &AppHandle,
    library: Arc<Library>,
    image_id: i64,
    factor: u32,
    cancel: &AtomicBool,
    on_status: &mut (dyn FnMut(&JobStatus) + Send),
) -> CmdResult<ImageDetail> {
    let cloud = app.state::<Cloud>();
    let client = cloud.client(app)?;
    let pending = pending_jobs(app);
    let mut submitted = None;
    let mut on_event = |event: UpscaleEvent| match event {
        UpscaleEvent::Submitted(job) => {
            submitted = Some(cloud.started_following(&pending, PendingJob::Upscale(job)));
        }
        UpscaleEvent::Status(status) => on_status(&status),
    };
    let outcome = upscale_in_cloud(
        &client,
        library,
        image_id,
        factor,
        JOB_TIMEOUT,
        cancel,
        &mut on_event,
    )
    .await;
    if let Some(job_id) = submitted {
        cloud.stopped_following(&pending, &job_id, &outcome);
    }
    Ok(outcome?)
}

/// Lists the job and follows it in the background, writing it down while it is pending so a
/// restart can pick it up. Returns the job's id in the job list.
fn spawn_job(
    app: &AppHandle,
    cloud: &Cloud,
    session: Arc<Session>,
    library: Arc<selfdiffusion_library::Library>,
    start: Start,
) -> u64 {
    let id = cloud.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let cancel = Arc::new(AtomicBool::new(false));
    let (prompt, count, project_id, state) = match &start {
        Start::New {
            request,
            project_id,
        } => (
            request.prompt.clone(),
            request.samples,
            *project_id,
            JobState::Queued,
        ),
        Start::Resume(job) => (
            job.request.prompt.clone(),
            job.request.samples,
            job.project_id,
            JobState::Running,
        ),
        Start::ResumeUpscale(job) => (
            format!("Upscale ×{} of {}", job.factor, job.source_name),
            1,
            job.project_id,
            JobState::Running,
        ),
    };
    let info = CloudJobInfo {
        id,
        backend: "cloud",
        project_id,
        user_prompt: prompt.clone(),
        prompt,
        count: count as usize,
        state,
        images: Vec::new(),
        progress: None,
    };
    lock(&cloud.jobs).push(CloudJob {
        info: info.clone(),
        cancel: cancel.clone(),
    });
    let _ = app.emit(events::JOB_CHANGED, info);
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let cloud = app.state::<Cloud>();
        let pending = pending_jobs(&app);
        let mut server_job = match &start {
            Start::Resume(job) => Some(job.job_id.clone()),
            Start::ResumeUpscale(job) => Some(job.job_id.clone()),
            Start::New { .. } => None,
        };
        let mut on_event = |event: CloudJobEvent| match event {
            CloudJobEvent::Submitted(job) => {
                server_job = Some(cloud.started_following(&pending, PendingJob::Generation(job)));
            }
            CloudJobEvent::Status(s) => cloud.update(&app, id, |j| {
                j.progress = s.progress;
                if s.status == Status::Running {
                    j.state = JobState::Running;
                }
            }),
            CloudJobEvent::Saved { image_id } => cloud.update(&app, id, |j| {
                j.images.push(image_id);
            }),
        };
        let client = &session.client;
        let outcome = match &start {
            Start::New {
                request,
                project_id,
            } => {
                let project = *project_id;
                run_cloud_job(
                    client,
                    request,
                    library,
                    project,
                    JOB_TIMEOUT,
                    &cancel,
                    &mut on_event,
                )
                .await
            }
            Start::Resume(job) => {
                follow_cloud_job(client, job, library, JOB_TIMEOUT, &cancel, &mut on_event).await
            }
            Start::ResumeUpscale(job) => {
                let mut on_status = |s: &JobStatus| on_event(CloudJobEvent::Status(s.clone()));
                let larger = follow_cloud_upscale(
                    client,
                    job,
                    library,
                    JOB_TIMEOUT,
                    &cancel,
                    &mut on_status,
                )
                .await;
                larger.map(|image| {
                    let image_id = image.summary.id;
                    on_event(CloudJobEvent::Saved { image_id });
                    vec![image_id]
                })
            }
        };
        if let Some(job_id) = &server_job {
            // Cancelled here: stop it on the server too, so it does not run for nothing.
            if matches!(outcome, Err(CloudError::Cancelled)) && cancel.load(Ordering::Relaxed) {
                if let Err(e) = client.cancel(job_id).await {
                    tracing::warn!(%job_id, error = %e, "cannot cancel the cloud job on the server");
                }
            }
            cloud.stopped_following(&pending, job_id, &outcome);
        }
        cloud.update(&app, id, |j| {
            j.state = match outcome {
                Ok(_) => JobState::Done,
                Err(CloudError::Cancelled) => JobState::Cancelled,
                Err(e) => JobState::Failed {
                    error: e.to_string(),
                },
            };
        });
    });
    id
}

/// Follows the cloud jobs an earlier run submitted but did not save (the app was closed, or
/// the cloud was unreachable), when a session and the library are there.
pub fn resume_pending(app: &AppHandle) {
    let cloud = app.state::<Cloud>();
    let Some(pending) = pending_jobs(app) else {
        return;
    };
    let (Some(session), Ok(library)) = (cloud.session(app), app.state::<AppState>().library())
    else {
        return;
    };
    // Only this account's jobs (another account's wait until it logs in again), each claimed in
    // `following` at once so that a second resume does not follow it twice.
    let jobs: Vec<PendingJob> = {
        let mut following = lock(&cloud.following);
        pending
            .list()
            .into_iter()
            .filter(|j| j.username() == session.username && following.insert(j.job_id().to_owned()))
            .collect()
    };
    if jobs.is_empty() {
        return;
    }
    tracing::info!(
        jobs = jobs.len(),
        "following the cloud jobs of an earlier run"
    );
    for job in jobs {
        let start = match job {
            PendingJob::Generation(job) => Start::Resume(*job),
            PendingJob::Upscale(job) => Start::ResumeUpscale(job),
        };
        spawn_job(app, &cloud, session.clone(), library.clone(), start);
    }
}
