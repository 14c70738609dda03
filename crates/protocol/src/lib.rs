//! The cloud generation protocol, shared by the desktop client and the server:
//! `POST /generate` with a [`GenerateRequest`] → [`Submitted`]; `POST /result` with a
//! [`ResultRequest`] → [`JobStatus`]; `GET /health` → [`ServerInfo`]. Both POSTs carry
//! `Authorization: Bearer <Cognito token>`; errors are [`ErrorBody`] with a 4xx/5xx status.

use serde::{Deserialize, Serialize};

pub use selfdiffusion_recipe::Limits;
pub use selfdiffusion_styles::Style;

/// A style in a request: a built-in style by name, or one of the user's own sent as its text
/// (the server does not know the user's styles).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum StyleRef {
    /// A built-in style, by name (any case).
    Named(String),
    /// A style of the user's own: its name, template and negative prompt.
    Inline(Style),
}

impl StyleRef {
    /// The style's name.
    pub fn name(&self) -> &str {
        match self {
            StyleRef::Named(name) => name,
            StyleRef::Inline(style) => &style.name,
        }
    }
}

/// A generation request: `samples` images of `prompt`. Unknown fields are refused, so a typo
/// is an error rather than a silently ignored setting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GenerateRequest {
    /// The prompt.
    pub prompt: String,
    /// Number of images (1–4 on a default server).
    pub samples: u32,
    /// What to steer away from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Styles, applied in order: built-in ones by name, the user's own as their text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub styles: Option<Vec<StyleRef>>,
    /// Denoising steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// Guidance scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f64>,
    /// Seed of the first image (image k uses seed + k); random when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Width in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Model name; the server's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// LoRAs the server has (see `/health`), each at its weight; `<lora:name:w>` tags in the
    /// prompt are taken as LoRAs too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loras: Option<Vec<LoraRef>>,
    /// A scale applied to every LoRA's weight (diffusers' `lora_scale`; 1 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_scale: Option<f64>,
    /// img2img: the image to start from, a PNG, JPEG or WebP file in base64 (the size defaults
    /// to its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_image: Option<String>,
    /// Inpainting: the mask over `init_image` (white repaints), an image file in base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
    /// How much of `init_image` is redrawn, 0 to 1 (0.75 when absent; 1 with a mask).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<f64>,
    /// Outpainting: pixels added to `init_image` left, right, top and bottom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outpaint: Option<[u32; 4]>,
    /// With a mask or an outpaint: put the image's own pixels back outside it, across an edge
    /// blurred by this many pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paste_back: Option<u32>,
    /// Hires fix: a second pass `factor` times larger, redrawn at `strength`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hires: Option<selfdiffusion_recipe::HiresFix>,
}

/// An upscale request (`POST /upscale`): one image made `factor` times larger, with the
/// server's ESRGAN model (or Lanczos); the answer and the result are those of `generate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpscaleRequest {
    /// The image, a PNG, JPEG or WebP file in base64 (its embedded recipe is kept).
    pub image: String,
    /// 2 or 4.
    pub factor: u32,
}

/// A LoRA asked for by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoraRef {
    /// Its name on the server.
    pub name: String,
    /// Its weight (negative subtracts); 1 when absent.
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

/// The `generate` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Submitted {
    /// The job to ask `result` about.
    pub job_id: String,
}

/// The `result` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResultRequest {
    /// The job.
    pub job_id: String,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Status {
    /// Waiting.
    Queued,
    /// Being generated.
    Running,
    /// Done; `images` are ready.
    Succeeded,
    /// Failed; `error` says why.
    Failed,
    /// Cancelled by its owner (`DELETE /v1/generations/{id}`); images made before stay.
    Cancelled,
}

impl Status {
    /// Every status, in the order a job goes through them.
    pub const ALL: [Status; 5] = [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Cancelled,
    ];

    /// Its name, as the JSON bodies, the job stores and the metrics' labels write it.
    pub fn name(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// The status called `name`.
    pub fn from_name(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether a job with this status has ended (succeeded, failed or was cancelled).
    pub fn has_ended(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Cancelled)
    }
}

/// The `result` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobStatus {
    /// Where the job is.
    pub status: Status,
    /// 0..1 when the server reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// Image URLs, once succeeded.
    #[serde(default)]
    pub images: Vec<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The `health` answer (no token needed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerInfo {
    /// `"ok"` when serving.
    #[serde(default)]
    pub status: String,
    /// The model it runs.
    #[serde(default)]
    pub model: Option<String>,
    /// Most images per job.
    #[serde(default)]
    pub max_samples: Option<u32>,
    /// What a request may ask for (sizes, steps, images, guidance, prompt length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// The LoRAs a request may name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loras: Option<Vec<String>>,
    /// Jobs waiting.
    #[serde(default)]
    pub queued: Option<usize>,
    /// Jobs being generated.
    #[serde(default)]
    pub running: Option<usize>,
}

/// Every error answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong and what to do.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_name_is_its_json_name() {
        for status in Status::ALL {
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{}\"", status.name())
            );
            assert_eq!(Status::from_name(status.name()), Some(status));
        }
        assert_eq!(Status::from_name("done"), None);
    }

    #[test]
    fn bodies_match_the_spec_examples() {
        let request: GenerateRequest =
            serde_json::from_str(r#"{"prompt": "a picture of a developper coding", "samples": 1}"#)
                .unwrap();
        assert_eq!(request.samples, 1);
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"prompt":"a picture of a developper coding","samples":1}"#
        );
        let typo = serde_json::from_str::<GenerateRequest>(r#"{"prompt": "a", "sampels": 1}"#)
            .unwrap_err();
        assert!(typo.to_string().contains("sampels"), "{typo}");

        let styled: GenerateRequest = serde_json::from_str(
            r#"{"prompt": "a", "samples": 1, "styles": ["Watercolor", {"name": "Mine", "prompt": "{prompt}, in brass"}]}"#,
        )
        .unwrap();
        let styles = styled.styles.unwrap();
        assert_eq!(styles[0], StyleRef::Named("Watercolor".into()));
        assert!(matches!(&styles[1], StyleRef::Inline(s) if s.prompt == "{prompt}, in brass"));
        assert_eq!(
            styles.iter().map(StyleRef::name).collect::<Vec<_>>(),
            ["Watercolor", "Mine"]
        );

        let status: JobStatus = serde_json::from_str(
            r#"{"status": "succeeded", "images": ["https://s3.amazonaws.com/x/0.png"]}"#,
        )
        .unwrap();
        assert_eq!((status.status, status.progress), (Status::Succeeded, None));
        let running = JobStatus {
            status: Status::Running,
            progress: Some(0.5),
            images: Vec::new(),
            error: None,
        };
        assert_eq!(
            serde_json::to_string(&running).unwrap(),
            r#"{"status":"running","progress":0.5,"images":[]}"#
        );
    }
}

/// `POST /v1/generations`: what to make (the earlier backend's body; its `num_inference_steps`
/// and `guidance_scale` are accepted for `steps` and `guidance`). The size is `aspect_ratio`
/// (`"16:9"`: about 512² pixels in that shape) or `width` and `height`, not both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GenerationCreate {
    /// The prompt.
    pub prompt: String,
    /// What to steer away from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// `W:H`, e.g. `"1:1"`, `"16:9"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
    /// Width in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Denoising steps.
    #[serde(
        default,
        alias = "num_inference_steps",
        skip_serializing_if = "Option::is_none"
    )]
    pub steps: Option<u32>,
    /// Guidance scale.
    #[serde(
        default,
        alias = "guidance_scale",
        skip_serializing_if = "Option::is_none"
    )]
    pub guidance: Option<f64>,
    /// Seed of the first image; random when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Number of images (1 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u32>,
    /// Styles, applied in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub styles: Option<Vec<StyleRef>>,
    /// A scale applied to every LoRA's weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_scale: Option<f64>,
}

/// A generation as `/v1/generations` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Generation {
    /// The job id.
    pub id: String,
    /// Where it is.
    pub status: Status,
    /// 0..1 while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// Signed, expiring links to the images, once it succeeded.
    #[serde(default)]
    pub output_urls: Vec<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /v1/keys`: a new API key's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyCreate {
    /// What the owner calls it ("laptop script").
    pub name: String,
}

/// An API key as its owner's list shows it (never the key itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyInfo {
    /// Its id (for revoking it).
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was made, in seconds since the epoch.
    pub created_at: u64,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// The answer to `POST /v1/keys`: the key itself, shown this once (the server keeps only its
/// hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedApiKey {
    /// The key as listed.
    pub info: ApiKeyInfo,
    /// The key to send as `X-API-Key`.
    pub key: String,
}
