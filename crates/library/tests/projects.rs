//! Projects: names, descriptions, counts, deletion and the default project.

mod common;

use common::{library, png, recipe};
use selfdiffusion_library::Error;

#[test]
fn create_trims_and_refuses_duplicates_without_case() {
    let (_d, lib) = library();
    let p = lib
        .create_project("  Space Cats ", Some("cats in space"))
        .unwrap();
    assert_eq!(p.name, "Space Cats");
    assert_eq!(p.description, "cats in space");
    let err = lib.create_project("space cats", None).unwrap_err();
    assert!(matches!(err, Error::DuplicateName(_)), "{err}");
    assert!(err.to_string().contains("already exists"));
    // Unicode case folding too.
    lib.create_project("ÉTÉ", None).unwrap();
    assert!(matches!(
        lib.create_project("été", None),
        Err(Error::DuplicateName(_))
    ));
}

#[test]
fn bad_names_are_refused_and_nothing_is_created() {
    let (_d, lib) = library();
    for bad in [
        "",
        "   ",
        "a/b",
        "..",
        "a\\b",
        "bell\u{7}",
        &"n".repeat(101),
    ] {
        let err = lib.create_project(bad, None).unwrap_err();
        assert!(matches!(err, Error::InvalidName(_)), "{bad:?}: {err}");
    }
    assert!(lib.list_projects().unwrap().is_empty());
    let long = "d".repeat(selfdiffusion_library::MAX_DESCRIPTION_CHARS + 1);
    assert!(matches!(
        lib.create_project("ok", Some(&long)),
        Err(Error::DescriptionTooLong(_))
    ));
}

#[test]
fn update_changes_given_fields_and_keeps_empty_ones() {
    let (_d, lib) = library();
    let p = lib.create_project("Alpha", Some("first")).unwrap();
    let other = lib.create_project("Beta", None).unwrap();
    let renamed = lib.update_project(p.id, Some("Gamma"), Some("")).unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.description.as_str()),
        ("Gamma", "first")
    );
    let described = lib
        .update_project(p.id, Some("  "), Some("second"))
        .unwrap();
    assert_eq!(
        (described.name.as_str(), described.description.as_str()),
        ("Gamma", "second")
    );
    // Renaming to the same name in another case is allowed for the project itself.
    assert_eq!(
        lib.update_project(p.id, Some("GAMMA"), None).unwrap().name,
        "GAMMA"
    );
    assert!(matches!(
        lib.update_project(other.id, Some("gamma"), None),
        Err(Error::DuplicateName(_))
    ));
    assert!(matches!(
        lib.update_project(other.id, Some("x/y"), None),
        Err(Error::InvalidName(_))
    ));
    assert!(matches!(
        lib.update_project(999, Some("x"), None),
        Err(Error::ProjectNotFound(999))
    ));
    assert_eq!(lib.project(other.id).unwrap().name, "Beta");
}

#[test]
fn summary_counts_images_bytes_and_generated() {
    let (_d, lib) = library();
    let p = lib.create_project("Sum", None).unwrap();
    let a = lib
        .add_image(p.id, &png(1), &recipe("one", 1), None)
        .unwrap();
    let b = lib
        .add_image(p.id, &png(2), &recipe("two", 2), None)
        .unwrap();
    let s = lib.project_summary(p.id).unwrap();
    assert_eq!(s.image_count, 2);
    assert_eq!(s.generated_count, 2);
    assert_eq!(s.bytes, a.summary.bytes + b.summary.bytes);
    assert_eq!(s.cover_thumb.as_deref(), Some(b.summary.thumb.as_str()));
    assert!(s.project.updated_at >= p.updated_at);
    let list = lib.list_projects().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0], s);
}

#[test]
fn delete_is_refused_while_jobs_run_then_removes_rows_and_files() {
    let (_d, lib) = library();
    let p = lib.create_project("Busy", None).unwrap();
    let img = lib.add_image(p.id, &png(3), &recipe("x", 3), None).unwrap();
    let job1 = lib.begin_job(p.id).unwrap();
    let job2 = lib.begin_job(p.id).unwrap();
    let err = lib.delete_project(p.id).unwrap_err();
    assert!(matches!(err, Error::ProjectBusy { count: 2, .. }), "{err}");
    assert!(err.to_string().contains("2 tasks running"), "{err}");
    assert_eq!(lib.project_summary(p.id).unwrap().running_jobs, 2);
    drop(job1);
    assert!(matches!(
        lib.delete_project(p.id),
        Err(Error::ProjectBusy { count: 1, .. })
    ));
    drop(job2);
    lib.delete_project(p.id).unwrap();
    assert!(matches!(lib.project(p.id), Err(Error::ProjectNotFound(_))));
    assert!(!lib.path_of(&img.summary.file).exists());
    assert!(!lib.root().join("images").join(p.id.to_string()).exists());
    assert!(matches!(
        lib.image(img.summary.id),
        Err(Error::ImageNotFound(_))
    ));
    assert!(lib.verify().unwrap().is_clean());
    assert!(matches!(
        lib.delete_project(p.id),
        Err(Error::ProjectNotFound(_))
    ));
    assert!(matches!(
        lib.begin_job(p.id),
        Err(Error::ProjectNotFound(_))
    ));
}

#[test]
fn names_are_never_paths_and_ids_are_not_reused() {
    let (_d, lib) = library();
    let a = lib.create_project("Dots. And spaces", None).unwrap();
    lib.add_image(a.id, &png(1), &recipe("x", 1), None).unwrap();
    lib.delete_project(a.id).unwrap();
    let b = lib.create_project("Dots. And spaces", None).unwrap();
    assert!(b.id > a.id, "a deleted project's id was reused");
    let entries: Vec<String> = std::fs::read_dir(lib.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(entries.iter().all(|e| !e.contains("Dots")), "{entries:?}");
}

#[test]
fn lookup_by_name_ignores_case() {
    let (_d, lib) = library();
    let p = lib.create_project("Mixed Case", None).unwrap();
    assert_eq!(lib.project_by_name(" mixed case ").unwrap().id, p.id);
    assert!(matches!(
        lib.project_by_name("nope"),
        Err(Error::ProjectNameNotFound(_))
    ));
}

#[test]
fn the_default_project_is_the_latest_or_a_new_one() {
    let (_dir, lib) = library();
    let first = lib.default_project("My images").unwrap();
    assert_eq!(first.name, "My images");
    assert_eq!(lib.list_projects().unwrap().len(), 1);
    assert_eq!(
        lib.default_project("My images").unwrap().id,
        first.id,
        "made once"
    );
    let other = lib.create_project("Trips", None).unwrap();
    assert_eq!(lib.default_project("My images").unwrap().id, other.id);
    assert_eq!(lib.list_projects().unwrap().len(), 2);
}
