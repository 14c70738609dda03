//! Prompt styles: a built-in catalog written for SelfDiffusion (`styles.json`), user styles from
//! a JSON file, and the rules by which several styles combine into the prompt actually sent.
//!
//! Combination: each selected style's template wraps the prompt in turn (its `{prompt}` is
//! replaced by the prompt so far); a template without `{prompt}` is appended after it, so when
//! no template has the placeholder the prompt comes first. Negative prompts are joined.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The placeholder a template puts the prompt in.
pub const PLACEHOLDER: &str = "{prompt}";
/// Longest style name, in characters.
pub const MAX_NAME_CHARS: usize = 60;
/// Longest template or negative prompt, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;

/// One style.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Style {
    /// Unique name.
    pub name: String,
    /// Group shown in the picker.
    #[serde(default = "user_category")]
    pub category: String,
    /// Template; `{prompt}` marks where the prompt goes.
    pub prompt: String,
    /// Negative prompt added when the style is used.
    #[serde(default)]
    pub negative_prompt: String,
    /// One line for the picker.
    #[serde(default)]
    pub description: String,
}

fn user_category() -> String {
    "User".into()
}

/// A user style that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StyleProblem {
    /// The style's name (or its position when it has none).
    pub name: String,
    /// What is wrong with it.
    pub reason: String,
}

/// What reading a user styles file gave.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UserStyles {
    /// The valid styles.
    pub styles: Vec<Style>,
    /// Entries skipped, by name.
    pub problems: Vec<StyleProblem>,
}

/// The file could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum StylesError {
    /// Reading failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Not a JSON list of styles.
    #[error("{path}: not a styles file ({reason}); expected {{\"styles\": [{{\"name\": …, \"prompt\": …}}]}}")]
    Format {
        /// The file.
        path: String,
        /// The parser's message.
        reason: String,
    },
}

/// The styles shipped with the app.
pub fn builtin() -> Vec<Style> {
    #[derive(Deserialize)]
    struct File {
        styles: Vec<Style>,
    }
    serde_json::from_str::<File>(include_str!("../styles.json"))
        .expect("the built-in styles are valid JSON")
        .styles
}

/// Why a style is invalid, if it is.
fn problem(style: &Style) -> Option<String> {
    let name = style.name.trim();
    if name.is_empty() {
        return Some("it has no name".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Some(format!(
            "the name is longer than {MAX_NAME_CHARS} characters"
        ));
    }
    if style.prompt.trim().is_empty() {
        return Some("its prompt template is empty".into());
    }
    if style.prompt.matches(PLACEHOLDER).count() > 1 {
        return Some(format!("its template uses {PLACEHOLDER} more than once"));
    }
    for (what, text) in [
        ("template", &style.prompt),
        ("negative prompt", &style.negative_prompt),
    ] {
        if text.chars().count() > MAX_TEXT_CHARS {
            return Some(format!(
                "its {what} is longer than {MAX_TEXT_CHARS} characters"
            ));
        }
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Some(format!("its {what} contains control characters"));
        }
    }
    None
}

/// Reads user styles from `path`: valid entries are kept; bad ones (and names that clash with a
/// built-in or an earlier entry) are reported by name and skipped. A missing file is no styles.
pub fn load_user_styles(path: &Path) -> Result<UserStyles, StylesError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(UserStyles::default()),
        Err(source) => {
            return Err(StylesError::Io {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let format = |reason: String| StylesError::Format {
        path: path.display().to_string(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format(e.to_string()))?;
    let entries = value
        .get("styles")
        .and_then(|s| s.as_array())
        .ok_or_else(|| format("no \"styles\" list".into()))?;
    let mut taken: HashSet<String> = builtin()
        .into_iter()
        .map(|s| s.name.to_lowercase())
        .collect();
    let mut out = UserStyles::default();
    for (i, entry) in entries.iter().enumerate() {
        let label = entry
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("entry {}", i + 1));
        let style = match serde_json::from_value::<Style>(entry.clone()) {
            Ok(s) => s,
            Err(e) => {
                out.problems.push(StyleProblem {
                    name: label,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if let Some(reason) = problem(&style) {
            out.problems.push(StyleProblem {
                name: label,
                reason,
            });
        } else if !taken.insert(style.name.trim().to_lowercase()) {
            out.problems.push(StyleProblem {
                name: label,
                reason: "another style already has this name".into(),
            });
        } else {
            out.styles.push(Style {
                name: style.name.trim().to_owned(),
                ..style
            });
        }
    }
    Ok(out)
}

/// Checks a style that arrives from elsewhere (a user file, a request): its name and texts.
pub fn check(style: &Style) -> Result<(), String> {
    problem(style).map_or(Ok(()), Err)
}

/// The style named `name` in `styles`: names match whatever their case and surrounding blanks,
/// as they are unique that way.
pub fn find<'a>(styles: &'a [Style], name: &str) -> Option<&'a Style> {
    let name = name.trim();
    styles
        .iter()
        .find(|s| s.name.trim().eq_ignore_ascii_case(name))
}

/// The prompt and negative prompt actually sent when `styles` are applied, in order.
pub fn apply(prompt: &str, negative: &str, styles: &[&Style]) -> (String, String) {
    let mut text = prompt.trim().to_owned();
    for style in styles {
        let template = style.prompt.trim();
        text = if template.contains(PLACEHOLDER) {
            template.replace(PLACEHOLDER, &text)
        } else if text.is_empty() {
            template.to_owned()
        } else {
            format!("{text}, {template}")
        };
    }
    let negatives: Vec<&str> = std::iter::once(negative)
        .chain(styles.iter().map(|s| s.negative_prompt.as_str()))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    (tidy(&text), negatives.join(", "))
}

/// Collapses the separators an empty prompt leaves behind (`"a , b"`, leading commas).
fn tidy(text: &str) -> String {
    let parts: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style(name: &str, prompt: &str, negative: &str) -> Style {
        Style {
            name: name.into(),
            category: "Test".into(),
            prompt: prompt.into(),
            negative_prompt: negative.into(),
            description: String::new(),
        }
    }

    #[test]
    fn the_builtin_catalog_is_large_valid_and_unique() {
        let all = builtin();
        assert!(all.len() >= 40, "{} styles", all.len());
        let mut names = HashSet::new();
        for s in &all {
            assert_eq!(problem(s), None, "{}", s.name);
            assert!(names.insert(s.name.to_lowercase()), "duplicate {}", s.name);
            assert!(
                !s.description.is_empty() && !s.category.is_empty(),
                "{}",
                s.name
            );
        }
    }

    #[test]
    fn templates_wrap_in_turn_and_plain_ones_append() {
        let photo = style("Photo", "a photo of {prompt}, sharp", "blurry");
        let noir = style("Noir", "{prompt}, film noir", "color");
        let detail = style("Detail", "highly detailed", "");
        assert_eq!(
            apply("a cat", "dog", &[&photo, &noir]),
            (
                "a photo of a cat, sharp, film noir".into(),
                "dog, blurry, color".into()
            )
        );
        assert_eq!(
            apply("a cat", "", &[&noir, &photo]).0,
            "a photo of a cat, film noir, sharp"
        );
        assert_eq!(
            apply("a cat", "", &[&detail]).0,
            "a cat, highly detailed",
            "no placeholder: prompt first"
        );
        assert_eq!(
            apply("a cat", "", &[&detail, &photo]).0,
            "a photo of a cat, highly detailed, sharp"
        );
        assert_eq!(apply("  a cat ", " ", &[]), ("a cat".into(), String::new()));
    }

    #[test]
    fn an_empty_prompt_is_filled_by_the_styles_alone() {
        let detail = style("Detail", "highly detailed", "noise");
        let photo = style("Photo", "a photo of {prompt}, sharp", "");
        assert_eq!(apply("", "", &[&detail]).0, "highly detailed");
        assert_eq!(apply("", "", &[&photo]).0, "a photo of, sharp");
        assert_eq!(apply("", "", &[]).0, "");
    }

    #[test]
    fn user_styles_keep_the_good_and_report_the_bad_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("styles.json");
        std::fs::write(
            &path,
            r#"{"styles": [
                {"name": "My Look", "prompt": "{prompt}, teal and orange", "negative_prompt": "grey"},
                {"name": "No Template", "prompt": "  "},
                {"name": "Twice", "prompt": "{prompt} and {prompt}"},
                {"name": "photo", "prompt": "clash with a built-in"},
                {"name": "My Look", "prompt": "again"},
                {"prompt": "no name"},
                {"name": "Bad Type", "prompt": 42},
                {"name": "Plain", "prompt": "soft light"}
            ]}"#,
        )
        .unwrap();
        let user = load_user_styles(&path).unwrap();
        let kept: Vec<&str> = user.styles.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(kept, ["My Look", "Plain"]);
        assert_eq!(user.styles[0].category, "User");
        let bad: Vec<&str> = user.problems.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            bad,
            [
                "No Template",
                "Twice",
                "photo",
                "My Look",
                "entry 6",
                "Bad Type"
            ]
        );
        assert!(user.problems.iter().all(|p| !p.reason.is_empty()));

        assert_eq!(
            load_user_styles(&dir.path().join("none.json")).unwrap(),
            UserStyles::default()
        );
        std::fs::write(&path, "[1, 2]").unwrap();
        assert!(load_user_styles(&path)
            .unwrap_err()
            .to_string()
            .contains("expected {\"styles\""));
    }
}
