//! Import of files, folders and zips (duplicates, metadata of other tools) and zip export.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::AtomicBool;

use common::{image_bytes, import, library, png, recipe};
use image::ImageFormat;
use selfdiffusion_library::{Error, ImageQuery, ImportOptions, Manifest, OnDuplicate, Origin};
use selfdiffusion_recipe::png_text::with_text_chunks;

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn all_images(
    lib: &selfdiffusion_library::Library,
    project: i64,
) -> Vec<selfdiffusion_library::ImageDetail> {
    let page = lib
        .list_images(
            project,
            &ImageQuery {
                limit: 1000,
                ..ImageQuery::default()
            },
        )
        .unwrap();
    page.images
        .iter()
        .map(|i| lib.image(i.id).unwrap())
        .collect()
}

#[test]
fn folder_import_takes_images_reads_metadata_and_reports_the_rest() {
    let (d, lib) = library();
    let p = lib.create_project("Imports", None).unwrap();
    let src = d.path().join("in");
    let a1111 = with_text_chunks(
        &png(1),
        &[(
            "parameters",
            "a red fox\nNegative prompt: snow\nSteps: 12, Seed: 99, Size: 24x16",
        )],
    )
    .unwrap();
    write(&src.join("fox.png"), &a1111);
    write(
        &src.join("sub/photo.jpg"),
        &image_bytes(2, ImageFormat::Jpeg),
    );
    write(
        &src.join("sub/pic.webp"),
        &image_bytes(3, ImageFormat::WebP),
    );
    write(&src.join("notes.txt"), b"not an image");
    write(&src.join("broken.png"), &png(4)[..40]);
    write(&src.join(".hidden.png"), &png(5));

    let report = import(&lib, p.id, &[&src], OnDuplicate::Skip);
    assert_eq!(report.imported.len(), 3, "{report:?}");
    let rejected: Vec<&str> = report.rejected.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(rejected.len(), 2, "{report:?}");
    assert!(rejected.iter().any(|n| n.ends_with("notes.txt")));
    assert!(rejected.contains(&"broken.png"));
    assert!(report.rejected.iter().all(|r| !r.reason.is_empty()));

    let images = all_images(&lib, p.id);
    let fox = images
        .iter()
        .find(|i| i.summary.original_name == "fox.png")
        .unwrap();
    assert_eq!(fox.recipe.prompt, "a red fox");
    assert_eq!(fox.recipe.negative_prompt, "snow");
    assert_eq!((fox.recipe.steps, fox.recipe.seed), (Some(12), Some(99)));
    assert_eq!(fox.summary.origin, Origin::Imported);
    // Imported files are kept byte for byte.
    assert_eq!(
        std::fs::read(lib.path_of(&fox.summary.file)).unwrap(),
        a1111
    );
    let jpg = images
        .iter()
        .find(|i| i.summary.original_name == "photo.jpg")
        .unwrap();
    assert_eq!(jpg.summary.format, "jpg");
    assert!(images.iter().any(|i| i.summary.format == "webp"));
}

#[test]
fn duplicates_by_name_and_hash_follow_the_chosen_policy() {
    let (d, lib) = library();
    let p = lib.create_project("Dups", None).unwrap();
    let a = d.path().join("a.png");
    let same_content = d.path().join("other/renamed.png");
    let same_name = d.path().join("other2/a.png");
    write(&a, &png(1));
    write(&same_content, &png(1));
    write(&same_name, &png(2));

    assert_eq!(
        import(&lib, p.id, &[&a], OnDuplicate::Skip).imported.len(),
        1
    );
    let skip = import(&lib, p.id, &[&same_content, &same_name], OnDuplicate::Skip);
    assert_eq!(skip.imported.len(), 0);
    assert_eq!(skip.skipped_duplicates, vec!["renamed.png", "a.png"]);

    let keep = import(&lib, p.id, &[&same_content], OnDuplicate::KeepBoth);
    assert_eq!(keep.imported.len(), 1);
    assert_eq!(lib.project_summary(p.id).unwrap().image_count, 2);

    let replace = import(&lib, p.id, &[&same_name], OnDuplicate::Replace);
    assert_eq!(replace.replaced, vec!["a.png"]);
    let images = all_images(&lib, p.id);
    // "a.png" (content 1) was replaced by the new a.png (content 2); renamed.png stays.
    assert_eq!(images.len(), 2);
    let new_a = images
        .iter()
        .find(|i| i.summary.original_name == "a.png")
        .unwrap();
    assert_eq!(
        std::fs::read(lib.path_of(&new_a.summary.file)).unwrap(),
        png(2)
    );
    assert!(lib.verify().unwrap().is_clean());
}

#[test]
fn zip_round_trip_keeps_bytes_recipes_and_marks() {
    let (d, lib) = library();
    let p = lib.create_project("Round", Some("trip")).unwrap();
    let generated = lib
        .add_image(p.id, &png(1), &recipe("first", 1), Some("same.png"))
        .unwrap();
    lib.add_image(p.id, &png(2), &recipe("second", 2), Some("same.png"))
        .unwrap();
    let src = d.path().join("x.webp");
    write(&src, &image_bytes(3, ImageFormat::WebP));
    import(&lib, p.id, &[&src], OnDuplicate::Skip);
    lib.set_favorite(generated.summary.id, true).unwrap();

    let zip_path = d.path().join("out").join("round.zip");
    std::fs::create_dir_all(zip_path.parent().unwrap()).unwrap();
    let mut steps = Vec::new();
    let report = lib
        .export_zip(p.id, None, &zip_path, &AtomicBool::new(false), &mut |pr| {
            steps.push((pr.done, pr.total))
        })
        .unwrap();
    assert_eq!(report.images, 3);
    assert_eq!(steps, vec![(1, 3), (2, 3), (3, 3)]);
    let leftovers: Vec<_> = std::fs::read_dir(zip_path.parent().unwrap())
        .unwrap()
        .collect();
    assert_eq!(leftovers.len(), 1, "no temp file left beside the zip");

    // Images are stored, not recompressed; the manifest describes them.
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let mut manifest = String::new();
    archive
        .by_name("manifest.json")
        .unwrap()
        .read_to_string(&mut manifest)
        .unwrap();
    let manifest: Manifest = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest.project.name, "Round");
    assert_eq!(manifest.images.len(), 3);
    for m in &manifest.images {
        assert_eq!(
            archive.by_name(&m.path).unwrap().compression(),
            zip::CompressionMethod::Stored
        );
    }
    let paths: Vec<&str> = manifest.images.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["images/same.png", "images/same (2).png", "images/x.webp"]
    );

    let other = lib.create_project("Copy", None).unwrap();
    let back = import(&lib, other.id, &[&zip_path], OnDuplicate::Skip);
    assert_eq!(back.imported.len(), 3, "{back:?}");
    let mut before = all_images(&lib, p.id);
    let mut after = all_images(&lib, other.id);
    before.sort_by(|a, b| a.sha256.cmp(&b.sha256));
    after.sort_by(|a, b| a.sha256.cmp(&b.sha256));
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            std::fs::read(lib.path_of(&b.summary.file)).unwrap(),
            std::fs::read(lib.path_of(&a.summary.file)).unwrap()
        );
        assert_eq!(a.recipe, b.recipe);
        assert_eq!(a.summary.original_name, b.summary.original_name);
        assert_eq!(a.summary.favorite, b.summary.favorite);
        assert_eq!(a.summary.origin, b.summary.origin);
        assert_eq!(a.summary.created_at, b.summary.created_at);
    }
    let again = import(&lib, other.id, &[&zip_path], OnDuplicate::Skip);
    assert_eq!(
        (again.imported.len(), again.skipped_duplicates.len()),
        (0, 3)
    );
}

#[test]
fn selection_export_contains_only_the_selection() {
    let (d, lib) = library();
    let p = lib.create_project("Sel", None).unwrap();
    let a = lib.add_image(p.id, &png(1), &recipe("a", 1), None).unwrap();
    lib.add_image(p.id, &png(2), &recipe("b", 2), None).unwrap();
    let out = d.path().join("sel.zip");
    let r = lib
        .export_zip(
            p.id,
            Some(&[a.summary.id]),
            &out,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(r.images, 1);
    let err = lib.export_zip(
        p.id,
        Some(&[424242]),
        &d.path().join("bad.zip"),
        &AtomicBool::new(false),
        &mut |_| {},
    );
    assert!(matches!(err, Err(Error::ImageNotFound(424242))));
    assert!(!d.path().join("bad.zip").exists());
}

fn zip_with(path: &Path, entries: &[(&str, &[u8])]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn zip_slip_entries_refuse_the_whole_archive() {
    let (d, lib) = library();
    let p = lib.create_project("Slip", None).unwrap();
    for evil in ["../evil.png", "/abs/evil.png", "ok/../../evil.png"] {
        let path = d.path().join("evil.zip");
        zip_with(&path, &[("good.png", &png(1)), (evil, &png(2))]);
        let err = lib
            .import_paths(
                p.id,
                std::slice::from_ref(&path),
                ImportOptions::default(),
                &AtomicBool::new(false),
                &mut |_| {},
            )
            .unwrap_err();
        assert!(matches!(err, Error::UnsafeZipEntry(_)), "{evil}: {err}");
        assert!(err.to_string().contains("nothing was imported"));
        assert_eq!(lib.project_summary(p.id).unwrap().image_count, 0);
    }
    assert!(!d.path().join("evil.png").exists());
}

#[test]
fn foreign_zip_imports_images_and_reports_other_entries() {
    let (d, lib) = library();
    let p = lib.create_project("Foreign", None).unwrap();
    let path = d.path().join("foreign.zip");
    zip_with(
        &path,
        &[
            ("dir/one.png", &png(1)),
            ("readme.md", b"# hi"),
            ("two.jpg", &image_bytes(2, ImageFormat::Jpeg)),
        ],
    );
    let report = import(&lib, p.id, &[&path], OnDuplicate::Skip);
    assert_eq!(report.imported.len(), 2);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].name, "readme.md");
    let garbage = d.path().join("garbage.zip");
    write(&garbage, b"PK not really");
    let err = lib.import_paths(
        p.id,
        &[garbage],
        ImportOptions::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    );
    assert!(matches!(err, Err(Error::BadArchive { .. })));
    let missing = lib.import_paths(
        p.id,
        &[d.path().join("nope.png")],
        ImportOptions::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    );
    assert!(matches!(missing, Err(Error::Io { .. })));
}

#[test]
fn cancelled_export_leaves_no_file_and_cancelled_import_keeps_what_it_did() {
    let (d, lib) = library();
    let p = lib.create_project("Cancel", None).unwrap();
    for i in 0..3 {
        lib.add_image(p.id, &png(i), &recipe("c", i.into()), None)
            .unwrap();
    }
    let cancel = AtomicBool::new(false);
    let out = d.path().join("c.zip");
    let err = lib
        .export_zip(p.id, None, &out, &cancel, &mut |pr| {
            if pr.done == 1 {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled));
    assert_eq!(
        std::fs::read_dir(d.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_file())
            .count(),
        0
    );

    let src = d.path().join("many");
    for i in 0..4u8 {
        write(&src.join(format!("{i}.png")), &png(50 + i));
    }
    let other = lib.create_project("Other", None).unwrap();
    let cancel = AtomicBool::new(false);
    let report = lib
        .import_paths(
            other.id,
            &[src],
            ImportOptions::default(),
            &cancel,
            &mut |pr| {
                if pr.done == 2 {
                    cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            },
        )
        .unwrap();
    assert!(report.cancelled);
    assert_eq!(report.imported.len(), 2);
    assert_eq!(lib.project_summary(other.id).unwrap().image_count, 2);
}

#[test]
fn unwritable_export_path_is_a_clear_error() {
    let (d, lib) = library();
    let p = lib.create_project("W", None).unwrap();
    lib.add_image(p.id, &png(1), &recipe("w", 1), None).unwrap();
    let blocker = d.path().join("file");
    write(&blocker, b"x");
    let err = lib
        .export_zip(
            p.id,
            None,
            &blocker.join("out.zip"),
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap_err();
    assert!(err.to_string().contains("cannot write export to"), "{err}");
    assert!(lib.verify().unwrap().is_clean());
}

#[test]
fn write_failure_midway_leaves_the_library_as_it_was() {
    let (d, lib) = library();
    let p = lib.create_project("Full", None).unwrap();
    let kept = lib
        .add_image(p.id, &png(1), &recipe("kept", 1), None)
        .unwrap();
    // The thumbnail folder becomes unusable: the image file is written, the thumbnail fails.
    let thumbs = lib.root().join("thumbs").join(p.id.to_string());
    std::fs::remove_dir_all(&thumbs).unwrap();
    write(&thumbs, b"in the way");
    let src = d.path().join("in");
    write(&src.join("a.png"), &png(2));
    write(&src.join("b.png"), &png(3));
    let err = lib.import_paths(
        p.id,
        &[src],
        ImportOptions::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    );
    assert!(matches!(err, Err(Error::Io { .. })), "{err:?}");
    assert_eq!(lib.project_summary(p.id).unwrap().image_count, 1);
    let files: Vec<_> = std::fs::read_dir(lib.root().join("images").join(p.id.to_string()))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1, "the half-written image was removed");
    std::fs::remove_file(&thumbs).unwrap();
    let report = lib.verify().unwrap();
    assert_eq!(report.missing_thumbnails.len(), 1);
    assert!(report.missing_files.is_empty() && report.orphan_files.is_empty());
    let repaired = lib.repair().unwrap();
    assert_eq!(repaired.thumbnails_rebuilt, 1);
    assert!(repaired.remaining.is_clean());
    assert!(lib.image(kept.summary.id).is_ok());
}

#[test]
fn a_zip_carries_the_inputs_its_recipes_name_to_another_library() {
    let (d, lib) = library();
    let p = lib.create_project("Inpainted", None).unwrap();
    let (source, mask) = (png(40), png(41));
    let image_sha = lib.keep_input(&source).unwrap();
    let mask_sha = lib.keep_input(&mask).unwrap();
    let mut made = recipe("a door", 3);
    made.source = Some(selfdiffusion_recipe::SourceImage {
        image_sha256: image_sha.clone(),
        strength: 0.7,
        mask_sha256: Some(mask_sha.clone()),
        outpaint: None,
        paste_back: Some(4),
    });
    lib.add_image(p.id, &png(42), &made, Some("door.png"))
        .unwrap();
    // An image whose recipe names an input this library does not keep: exported without it.
    let mut orphan = recipe("a window", 4);
    orphan.source = Some(selfdiffusion_recipe::SourceImage {
        image_sha256: "0".repeat(64),
        strength: 0.5,
        mask_sha256: None,
        outpaint: None,
        paste_back: None,
    });
    lib.add_image(p.id, &png(43), &orphan, Some("window.png"))
        .unwrap();
    let zip_path = d.path().join("inpainted.zip");
    lib.export_zip(p.id, None, &zip_path, &AtomicBool::new(false), &mut |_| {})
        .unwrap();

    let (_d2, other) = library();
    let q = other.create_project("Elsewhere", None).unwrap();
    let back = import(&other, q.id, &[&zip_path], OnDuplicate::Skip);
    assert_eq!(
        back.imported.len(),
        2,
        "inputs are not imported as images: {back:?}"
    );
    assert!(back.rejected.is_empty(), "{back:?}");
    for (sha, bytes) in [(&image_sha, &source), (&mask_sha, &mask)] {
        let kept = other.input_path(sha).unwrap();
        assert_eq!(&std::fs::read(kept).unwrap(), bytes);
    }
    assert!(other.input_path(&"0".repeat(64)).is_err());
}
