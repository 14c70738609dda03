//! The queue on a real library and a tiny random model built by the test.

#[path = "../../engine/tests/common/mod.rs"]
mod common;

use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use candle_core::{DType, Device};
use selfdiffusion_engine::{Engine, ModelSpec, Phase};
use selfdiffusion_library::{Error as LibraryError, ImageQuery, Library};
use selfdiffusion_queue::{JobSpec, JobState, Queue, QueueError, QueueEvent};

struct Setup {
    _dir: tempfile::TempDir,
    model: std::path::PathBuf,
    library: Arc<Library>,
    project: i64,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    common::tiny_model(&model);
    let library = Arc::new(Library::open(dir.path().join("lib")).unwrap());
    let project = library.create_project("Queue", None).unwrap().id;
    Setup {
        _dir: dir,
        model,
        library,
        project,
    }
}

fn queue(s: &Setup) -> (Queue, Receiver<QueueEvent>) {
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let engine = Arc::new(Engine::new(Device::Cpu, DType::F32));
    let q = Queue::new(engine, s.library.clone(), move |e| {
        let _ = tx.lock().unwrap().send(e);
    });
    (q, rx)
}

fn spec(s: &Setup, prompt: &str, count: usize, steps: usize) -> JobSpec {
    JobSpec {
        project_id: s.project,
        model: ModelSpec::folder(&s.model),
        model_name: "tiny".into(),
        prompt: prompt.into(),
        negative_prompt: "blue".into(),
        styles: Vec::new(),
        steps,
        guidance: 5.0,
        seed: 100,
        width: 64,
        height: 64,
        count,
        scheduler: None,
        size_conditions: Default::default(),
        init: None,
        hires: None,
    }
}

fn state(q: &Queue, id: u64) -> JobState {
    q.jobs().into_iter().find(|j| j.id == id).unwrap().state
}

/// Waits for the first denoising progress of `id` at `step` or later.
fn wait_for_step(rx: &Receiver<QueueEvent>, id: u64, step: usize) {
    loop {
        match rx
            .recv_timeout(Duration::from_secs(60))
            .expect("progress arrives")
        {
            QueueEvent::Progress(p)
                if p.id == id && p.phase == Phase::Denoising && p.step >= step =>
            {
                return
            }
            _ => {}
        }
    }
}

#[test]
fn jobs_run_in_order_and_save_every_image_with_its_recipe() {
    let s = setup();
    let (q, rx) = queue(&s);
    let style = selfdiffusion_styles::builtin()
        .into_iter()
        .find(|st| st.name == "Watercolor")
        .unwrap();
    let a = q
        .submit(JobSpec {
            styles: vec![style],
            ..spec(&s, "a red cat", 2, 3)
        })
        .unwrap();
    let b = q.submit(spec(&s, "a dog", 1, 3)).unwrap();
    assert!(q.wait_idle(Duration::from_secs(120)));
    assert_eq!(
        (state(&q, a), state(&q, b)),
        (JobState::Done, JobState::Done)
    );

    let jobs = q.jobs();
    let (ja, jb) = (&jobs[0], &jobs[1]);
    assert_eq!(ja.images.len(), 2);
    assert!(
        ja.images.iter().all(|i| *i < jb.images[0]),
        "job A finished before job B started"
    );
    let first = s.library.image(ja.images[0]).unwrap();
    let r = &first.recipe;
    assert_eq!(
        r.prompt,
        "watercolor painting of a red cat, soft washes, bleeding edges, paper texture"
    );
    assert!(
        r.negative_prompt.starts_with("blue, photo"),
        "{}",
        r.negative_prompt
    );
    assert_eq!(r.styles, ["Watercolor"]);
    assert_eq!(
        (r.seed, r.steps, r.width, r.height),
        (Some(100), Some(3), Some(64), Some(64))
    );
    assert_eq!(r.backend.as_deref(), Some("local"));
    assert_eq!(
        (
            r.extra["user_prompt"].as_str(),
            r.extra["user_negative_prompt"].as_str()
        ),
        (Some("a red cat"), Some("blue"))
    );
    assert_eq!(
        s.library.image(ja.images[1]).unwrap().recipe.seed,
        Some(101)
    );

    // Reusing the second image's parameters gives the identical file.
    let second = s.library.image(ja.images[1]).unwrap();
    let again = q
        .submit(JobSpec {
            styles: selfdiffusion_styles::builtin()
                .into_iter()
                .filter(|st| st.name == "Watercolor")
                .collect(),
            seed: 101,
            ..spec(&s, "a red cat", 1, 3)
        })
        .unwrap();
    assert!(q.wait_idle(Duration::from_secs(60)));
    let remade = s
        .library
        .image(q.jobs().into_iter().find(|j| j.id == again).unwrap().images[0])
        .unwrap();
    assert_eq!(remade.sha256, second.sha256);

    let events: Vec<QueueEvent> = rx.try_iter().collect();
    // Each job's changes arrive in the order they happened: queued, running, then its end
    // (a "queued" after "running" left the app showing a running job as waiting).
    for id in [a, b, again] {
        let states: Vec<u8> = events
            .iter()
            .filter_map(|e| match e {
                QueueEvent::Changed(info) if info.id == id => Some(match info.state {
                    JobState::Queued => 0,
                    JobState::Running => 1,
                    _ => 2,
                }),
                _ => None,
            })
            .collect();
        assert_eq!(states.first(), Some(&0), "job {id}: {states:?}");
        assert!(
            states.windows(2).all(|w| w[0] <= w[1]),
            "job {id}: {states:?}"
        );
        assert_eq!(states.last(), Some(&2), "job {id}: {states:?}");
    }
    let progress: Vec<_> = events
        .into_iter()
        .filter_map(|e| {
            if let QueueEvent::Progress(p) = e {
                Some(p)
            } else {
                None
            }
        })
        .collect();
    assert!(progress.iter().any(|p| p.id == a && p.eta_s.is_some()));
    assert!(
        progress.iter().any(|p| p.phase == Phase::LoadingModel),
        "the first job loads the model"
    );
}

#[test]
fn cancel_a_queued_job_and_the_running_one() {
    let s = setup();
    let (q, rx) = queue(&s);
    let long = q.submit(spec(&s, "a long job", 1, 150)).unwrap();
    let waiting = q.submit(spec(&s, "never runs", 1, 3)).unwrap();
    q.cancel(waiting).unwrap();
    assert_eq!(state(&q, waiting), JobState::Cancelled);
    assert!(matches!(
        s.library.delete_project(s.project),
        Err(LibraryError::ProjectBusy { count: 1, .. })
    ));

    wait_for_step(&rx, long, 2);
    q.cancel(long).unwrap();
    assert!(q.wait_idle(Duration::from_secs(60)));
    assert_eq!(state(&q, long), JobState::Cancelled);
    let page = s
        .library
        .list_images(s.project, &ImageQuery::default())
        .unwrap();
    assert!(
        page.images.is_empty(),
        "nothing is saved for a cancelled image"
    );
    assert!(matches!(q.cancel(999), Err(QueueError::UnknownJob(999))));
    s.library.delete_project(s.project).unwrap();
}

#[test]
fn stop_after_current_keeps_the_finished_image() {
    let s = setup();
    let (q, rx) = queue(&s);
    let id = q.submit(spec(&s, "a batch", 3, 4)).unwrap();
    wait_for_step(&rx, id, 1);
    q.stop_after_current(id).unwrap();
    assert!(q.wait_idle(Duration::from_secs(60)));
    let job = q.jobs().into_iter().next().unwrap();
    assert_eq!(job.state, JobState::Stopped);
    assert_eq!(job.images.len(), 1);
}

#[test]
fn bad_jobs_are_refused_and_engine_errors_do_not_stop_the_queue() {
    let s = setup();
    let (q, _rx) = queue(&s);
    let err = q.submit(spec(&s, "   ", 1, 3)).unwrap_err().to_string();
    assert!(err.contains("prompt is empty"), "{err}");
    assert!(q
        .submit(spec(&s, "x", 1, 0))
        .unwrap_err()
        .to_string()
        .contains("steps must be between 1 and 150"));
    assert!(q
        .submit(spec(&s, "x", 0, 3))
        .unwrap_err()
        .to_string()
        .contains("count must be between 1 and 16"));
    assert!(q
        .submit(JobSpec {
            project_id: 999,
            ..spec(&s, "x", 1, 3)
        })
        .is_err());

    let missing = q
        .submit(JobSpec {
            model: ModelSpec::folder(s.model.join("missing")),
            ..spec(&s, "x", 1, 3)
        })
        .unwrap_err()
        .to_string();
    assert!(missing.contains("config.json"), "{missing}");

    // A folder whose configs read but whose pipeline is missing fails when it runs.
    let broken_dir = tempfile::tempdir().unwrap();
    for part in ["unet", "vae"] {
        std::fs::create_dir(broken_dir.path().join(part)).unwrap();
        std::fs::copy(
            s.model.join(part).join("config.json"),
            broken_dir.path().join(part).join("config.json"),
        )
        .unwrap();
    }
    let broken = q
        .submit(JobSpec {
            model: ModelSpec::folder(broken_dir.path()),
            ..spec(&s, "x", 1, 3)
        })
        .unwrap();
    let fine = q.submit(spec(&s, "a cat", 1, 3)).unwrap();
    assert!(q.wait_idle(Duration::from_secs(60)));
    match state(&q, broken) {
        JobState::Failed { error } => assert!(error.contains("model_index.json"), "{error}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(state(&q, fine), JobState::Done);
}

#[test]
fn lora_tags_leave_the_prompt_and_the_loras_reach_the_recipe() {
    let s = setup();
    let (q, _rx) = queue(&s);
    let lora = s._dir.path().join("glow.safetensors");
    common::tiny_lora(&lora);
    let mut job = spec(&s, "a cat <lora:glow:0.5>", 1, 2);
    job.model.loras = vec![(lora, 0.5)];
    let id = q.submit(job).unwrap();
    assert!(q.wait_idle(Duration::from_secs(60)));
    assert_eq!(state(&q, id), JobState::Done);
    let info = q.jobs().into_iter().find(|j| j.id == id).unwrap();
    assert_eq!(info.user_prompt, "a cat <lora:glow:0.5>");
    let recipe = s.library.image(info.images[0]).unwrap().recipe;
    assert_eq!(recipe.prompt, "a cat", "the tag is not sent to the model");
    assert_eq!(recipe.extra["user_prompt"], "a cat <lora:glow:0.5>");
    assert_eq!(
        (recipe.loras[0].name.as_str(), recipe.loras[0].weight),
        ("glow", 0.5)
    );
    assert_eq!(recipe.loras[0].hash.as_ref().map(String::len), Some(12));
}

#[test]
fn an_inpaint_job_saves_its_image_with_the_source_in_the_recipe() {
    use selfdiffusion_engine::{ImageInput, Mask, Picture};
    let s = setup();
    let (q, _rx) = queue(&s);
    let rgb: Vec<u8> = (0..64 * 64 * 3).map(|i| (i % 251) as u8).collect();
    let luma: Vec<u8> = (0..64 * 64)
        .map(|i| if i % 64 < 32 { 255 } else { 0 })
        .collect();
    let input = ImageInput {
        image: Arc::new(Picture::from_pixels(64, 64, rgb)),
        strength: 0.5,
        mask: Some(Arc::new(Mask::from_luma(64, 64, luma))),
        outpaint: None,
        paste_back: None,
    };
    let bad = q
        .submit(JobSpec {
            init: Some(ImageInput {
                strength: 2.0,
                ..input.clone()
            }),
            ..spec(&s, "a cat", 1, 4)
        })
        .unwrap_err()
        .to_string();
    assert!(bad.contains("strength 2 is outside 0 to 1"), "{bad}");
    let id = q
        .submit(JobSpec {
            init: Some(input.clone()),
            ..spec(&s, "a cat", 1, 4)
        })
        .unwrap();
    assert!(q.wait_idle(Duration::from_secs(60)));
    assert_eq!(state(&q, id), JobState::Done);
    let image = q.jobs().into_iter().find(|j| j.id == id).unwrap().images[0];
    let source = s.library.image(image).unwrap().recipe.source.unwrap();
    assert_eq!(source.image_sha256, input.image.sha256);
    assert_eq!(
        source.mask_sha256.as_deref(),
        Some(input.mask.unwrap().sha256.as_str())
    );
    assert_eq!(source.strength, 0.5);
}
