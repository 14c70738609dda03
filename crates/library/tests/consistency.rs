//! `verify` and `repair`: the library checked against its files, and put right.

mod common;

use common::{library, png, recipe};
use selfdiffusion_library::{Library, Origin};
use selfdiffusion_recipe::png_text::with_text_chunks;

#[test]
fn verify_finds_missing_orphan_and_changed_files_and_repair_fixes_the_safe_ones() {
    let (_d, lib) = library();
    let p = lib.create_project("V", None).unwrap();
    let a = lib.add_image(p.id, &png(1), &recipe("a", 1), None).unwrap();
    let b = lib.add_image(p.id, &png(2), &recipe("b", 2), None).unwrap();
    assert!(lib.verify().unwrap().is_clean());

    std::fs::remove_file(lib.path_of(&a.summary.file)).unwrap();
    std::fs::write(lib.path_of(&b.summary.file), png(3)).unwrap();
    let orphan_generated = lib
        .root()
        .join("images")
        .join(p.id.to_string())
        .join("lost.png");
    std::fs::write(
        &orphan_generated,
        with_text_chunks(
            &png(4),
            &[("selfdiffusion", r#"{"prompt":"found again","seed":4}"#)],
        )
        .unwrap(),
    )
    .unwrap();
    let orphan_unknown_project = lib.root().join("images").join("999").join("stray.png");
    std::fs::create_dir_all(orphan_unknown_project.parent().unwrap()).unwrap();
    std::fs::write(&orphan_unknown_project, png(5)).unwrap();
    let temp = lib
        .root()
        .join("images")
        .join(p.id.to_string())
        .join(".tmp-half.png");
    std::fs::write(&temp, b"half").unwrap();
    let orphan_thumb = lib
        .root()
        .join("thumbs")
        .join(p.id.to_string())
        .join("old.jpg");
    std::fs::write(&orphan_thumb, b"thumb").unwrap();

    let report = lib.verify().unwrap();
    assert_eq!(report.images_checked, 2);
    assert_eq!(report.missing_files.len(), 1);
    assert_eq!(report.missing_files[0].image_id, a.summary.id);
    assert_eq!(report.hash_mismatches.len(), 1);
    assert_eq!(report.hash_mismatches[0].image_id, b.summary.id);
    assert_eq!(report.orphan_files.len(), 4, "{:?}", report.orphan_files);

    let repair = lib.repair().unwrap();
    assert_eq!(repair.reindexed.len(), 2);
    assert_eq!(repair.removed.len(), 2);
    assert!(!temp.exists() && !orphan_thumb.exists());
    let found = lib.image(repair.reindexed[0]).unwrap();
    assert_eq!(found.recipe.prompt, "found again");
    assert_eq!(found.summary.origin, Origin::Generated);
    assert_eq!(found.summary.project_id, p.id);
    let stray = lib.image(repair.reindexed[1]).unwrap();
    assert_eq!(
        lib.project(stray.summary.project_id).unwrap().name,
        "Recovered images"
    );
    // Missing files and changed content are left for a person.
    assert_eq!(repair.remaining.missing_files.len(), 1);
    assert_eq!(repair.remaining.hash_mismatches.len(), 1);
    assert!(repair.remaining.orphan_files.is_empty());
}

#[test]
fn reopening_cleans_files_left_by_an_interrupted_operation() {
    let (_d, lib) = library();
    let p = lib.create_project("R", None).unwrap();
    let a = lib.add_image(p.id, &png(1), &recipe("a", 1), None).unwrap();
    let root = lib.root().to_path_buf();
    drop(lib);
    // Simulate a crash after an image file was written but before its row committed.
    let conn = rusqlite::Connection::open(root.join("library.sqlite3")).unwrap();
    let half = format!("images/{}/half.png", p.id);
    conn.execute("INSERT INTO pending_files(path) VALUES (?1)", [&half])
        .unwrap();
    conn.execute(
        "INSERT INTO pending_files(path) VALUES (?1)",
        [&a.summary.file],
    )
    .unwrap();
    drop(conn);
    std::fs::write(
        root.join("images").join(p.id.to_string()).join("half.png"),
        png(2),
    )
    .unwrap();
    std::fs::write(
        root.join("images")
            .join(p.id.to_string())
            .join(".tmp-half.png"),
        b"partial",
    )
    .unwrap();

    let lib = Library::open(&root).unwrap();
    assert!(
        lib.verify().unwrap().is_clean(),
        "{:?}",
        lib.verify().unwrap()
    );
    assert!(
        lib.path_of(&a.summary.file).exists(),
        "a claimed file is never removed"
    );
}
