//! Images in a project: adding, listing with a stable cursor, favourites, deletion, moving.

mod common;

use common::{image_bytes, library, png, recipe};
use image::ImageFormat;
use selfdiffusion_library::{Error, ImageQuery, Origin};
use selfdiffusion_recipe::embedded_recipe;
use selfdiffusion_recipe::png_text::read_text_chunks;
use selfdiffusion_recipe::Recipe;

#[test]
fn added_image_is_png_with_both_metadata_forms() {
    let (_d, lib) = library();
    let p = lib.create_project("P", None).unwrap();
    let r = recipe("a lighthouse at dusk, 夕暮れ", 42);
    let img = lib
        .add_image(p.id, &png(9), &r, Some("lighthouse.png"))
        .unwrap();
    assert_eq!(img.recipe, r);
    assert_eq!(img.summary.origin, Origin::Generated);
    assert_eq!((img.summary.width, img.summary.height), (24, 16));
    let bytes = std::fs::read(lib.path_of(&img.summary.file)).unwrap();
    assert_eq!(bytes.len() as u64, img.summary.bytes);
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let texts = read_text_chunks(&bytes);
    let params = &texts.iter().find(|(k, _)| k == "parameters").unwrap().1;
    assert!(
        params.starts_with("a lighthouse at dusk, 夕暮れ\nNegative prompt: blurry\nSteps: 20"),
        "{params}"
    );
    assert!(params.contains("Seed: 42"));
    assert_eq!(embedded_recipe(&bytes).unwrap(), r);
    // The pixels are the ones given.
    let given = image::load_from_memory(&png(9)).unwrap();
    assert_eq!(
        image::load_from_memory(&bytes).unwrap().as_bytes(),
        given.as_bytes()
    );
    let thumb = image::open(lib.path_of(&img.summary.thumb)).unwrap();
    assert!(thumb.width() <= 256 && thumb.height() <= 256);
}

#[test]
fn jpeg_input_is_stored_as_png() {
    let (_d, lib) = library();
    let p = lib.create_project("P", None).unwrap();
    let img = lib
        .add_image(
            p.id,
            &image_bytes(4, ImageFormat::Jpeg),
            &recipe("j", 1),
            None,
        )
        .unwrap();
    assert_eq!(img.summary.format, "png");
    assert!(img.summary.file.ends_with(".png"));
}

#[test]
fn corrupt_and_non_image_bytes_are_refused_and_nothing_is_written() {
    let (_d, lib) = library();
    let p = lib.create_project("P", None).unwrap();
    let mut truncated = png(1);
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        lib.add_image(p.id, &truncated, &Recipe::default(), None),
        Err(Error::CorruptImage { .. })
    ));
    assert!(matches!(
        lib.add_image(p.id, b"hello world", &Recipe::default(), None),
        Err(Error::UnsupportedFile(_))
    ));
    assert!(matches!(
        lib.add_image(p.id, &[], &Recipe::default(), None),
        Err(Error::UnsupportedFile(_))
    ));
    assert!(matches!(
        lib.add_image(999, &png(1), &Recipe::default(), None),
        Err(Error::ProjectNotFound(999))
    ));
    assert_eq!(lib.project_summary(p.id).unwrap().image_count, 0);
    assert!(lib.verify().unwrap().is_clean());
}

#[test]
fn cursor_pages_are_stable_under_inserts() {
    let (_d, lib) = library();
    let p = lib.create_project("Paged", None).unwrap();
    let mut ids = Vec::new();
    for i in 0..25u8 {
        ids.push(
            lib.add_image(
                p.id,
                &png(i),
                &recipe(&format!("image {i}"), i.into()),
                None,
            )
            .unwrap()
            .summary
            .id,
        );
    }
    let mut seen = Vec::new();
    let mut query = ImageQuery {
        limit: 10,
        ..ImageQuery::default()
    };
    let mut inserted = 0u8;
    loop {
        let page = lib.list_images(p.id, &query).unwrap();
        seen.extend(page.images.iter().map(|i| i.id));
        // New images arrive between page loads; they must not shift or repeat what follows.
        for _ in 0..3 {
            lib.add_image(p.id, &png(100 + inserted), &recipe("late", 0), None)
                .unwrap();
            inserted += 1;
        }
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "every original image exactly once, newest first");
    // A fresh first page starts with the newest.
    let first = lib.list_images(p.id, &ImageQuery::default()).unwrap();
    assert_eq!(first.images.len(), 25 + inserted as usize);
    assert!(first.images.windows(2).all(|w| w[0].id > w[1].id));
    assert!(first.next_cursor.is_none());
}

#[test]
fn search_and_favorites_filter() {
    let (_d, lib) = library();
    let p = lib.create_project("S", None).unwrap();
    let cat = lib
        .add_image(p.id, &png(1), &recipe("A Cat on 100% wool", 1), None)
        .unwrap();
    let dog = lib
        .add_image(p.id, &png(2), &recipe("a dog", 2), None)
        .unwrap();
    let q = |s: &str| ImageQuery {
        search: Some(s.into()),
        ..ImageQuery::default()
    };
    let ids = |query: &ImageQuery| {
        lib.list_images(p.id, query)
            .unwrap()
            .images
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&q("cat")), vec![cat.summary.id]);
    assert_eq!(ids(&q("100%")), vec![cat.summary.id]);
    assert_eq!(
        ids(&q("_")),
        Vec::<i64>::new(),
        "LIKE wildcards are escaped"
    );
    assert_eq!(ids(&q("blurry")).len(), 2, "negative prompt is searched");
    assert!(lib.toggle_favorite(dog.summary.id).unwrap());
    let favs = ImageQuery {
        favorites_only: true,
        ..ImageQuery::default()
    };
    assert_eq!(ids(&favs), vec![dog.summary.id]);
    assert!(!lib.toggle_favorite(dog.summary.id).unwrap());
    assert!(ids(&favs).is_empty());
    assert!(matches!(
        lib.toggle_favorite(12345),
        Err(Error::ImageNotFound(_))
    ));
    let bad = ImageQuery {
        cursor: Some("garbage".into()),
        ..ImageQuery::default()
    };
    assert!(matches!(
        lib.list_images(p.id, &bad),
        Err(Error::InvalidCursor(_))
    ));
    assert!(matches!(
        lib.list_images(999, &ImageQuery::default()),
        Err(Error::ProjectNotFound(_))
    ));
}

#[test]
fn delete_selected_removes_rows_and_files_together() {
    let (_d, lib) = library();
    let p = lib.create_project("D", None).unwrap();
    let a = lib.add_image(p.id, &png(1), &recipe("a", 1), None).unwrap();
    let b = lib.add_image(p.id, &png(2), &recipe("b", 2), None).unwrap();
    // An unknown id in the selection deletes nothing.
    assert!(matches!(
        lib.delete_images(&[a.summary.id, 777]),
        Err(Error::ImageNotFound(777))
    ));
    assert!(lib.path_of(&a.summary.file).exists());
    assert_eq!(lib.delete_images(&[a.summary.id]).unwrap(), 1);
    assert!(!lib.path_of(&a.summary.file).exists());
    assert!(!lib.path_of(&a.summary.thumb).exists());
    assert!(lib.path_of(&b.summary.file).exists());
    assert!(lib.verify().unwrap().is_clean());
}

#[test]
fn move_and_copy_between_projects_keep_bytes_and_recipes() {
    let (_d, lib) = library();
    let src = lib.create_project("Src", None).unwrap();
    let dst = lib.create_project("Dst", None).unwrap();
    let a = lib
        .add_image(src.id, &png(1), &recipe("a", 1), Some("a.png"))
        .unwrap();
    lib.set_favorite(a.summary.id, true).unwrap();
    let bytes = std::fs::read(lib.path_of(&a.summary.file)).unwrap();

    let copied = lib.copy_images(&[a.summary.id], dst.id).unwrap();
    let c = lib.image(copied[0]).unwrap();
    assert_eq!(c.summary.project_id, dst.id);
    assert_eq!(
        (c.sha256.as_str(), c.recipe.clone(), c.summary.favorite),
        (a.sha256.as_str(), a.recipe.clone(), true)
    );
    assert_eq!(std::fs::read(lib.path_of(&c.summary.file)).unwrap(), bytes);
    assert!(lib.image(a.summary.id).is_ok(), "copy keeps the original");

    let moved = lib.move_images(&[a.summary.id], dst.id).unwrap();
    let m = lib.image(moved[0]).unwrap();
    assert_eq!(m.summary.project_id, dst.id);
    assert_eq!(std::fs::read(lib.path_of(&m.summary.file)).unwrap(), bytes);
    assert!(matches!(
        lib.image(a.summary.id),
        Err(Error::ImageNotFound(_))
    ));
    assert_eq!(lib.project_summary(src.id).unwrap().image_count, 0);
    assert_eq!(lib.project_summary(dst.id).unwrap().image_count, 2);
    assert!(matches!(
        lib.copy_images(&[m.summary.id], 999),
        Err(Error::ProjectNotFound(_))
    ));
    assert!(lib.verify().unwrap().is_clean());
}
