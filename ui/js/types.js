// @ts-check
// The shapes the Rust shell sends and takes (its command/event contract), as JSDoc types.
// Nothing runs here; modules import the types with `import('./types.js').Name`.

/**
 * A failed command: `kind` says what to do about it, `message` is a sentence for the user.
 * @typedef {'invalid' | 'not_found' | 'conflict' | 'not_installed' | 'offline' | 'unauthorized'
 *   | 'not_confirmed' | 'cancelled' | 'failed'} ErrorKind
 */

/**
 * Generation limits, declared once in the core (per model, the engine's own, or the cloud's).
 * @typedef {object} Limits
 * @property {number} min_side
 * @property {number} max_side
 * @property {number} side_step Width and height are multiples of this.
 * @property {number} max_steps
 * @property {number} max_count
 * @property {number} max_guidance
 * @property {number | null} max_prompt_chars
 */

/**
 * @typedef {object} Project
 * @property {number} id
 * @property {string} name
 * @property {string} description
 * @property {number} created_at ms since the epoch
 * @property {number} updated_at ms since the epoch
 */

/**
 * A project with the figures the project list shows.
 * @typedef {Project & {
 *   image_count: number, bytes: number, generated_count: number,
 *   cover_thumb: string | null, running_jobs: number
 * }} ProjectSummary
 */

/**
 * How an image was made. Unknown fields are kept by the core; `user_prompt` and
 * `user_negative_prompt` are what the user typed before styles.
 * @typedef {object} Recipe
 * @property {string} [prompt]
 * @property {string} [negative_prompt]
 * @property {string[]} [styles]
 * @property {string | null} [model]
 * @property {string | null} [scheduler]
 * @property {number | null} [steps]
 * @property {number | null} [guidance]
 * @property {number | null} [seed]
 * @property {number | null} [width]
 * @property {number | null} [height]
 * @property {string | null} [backend]
 * @property {string | null} [job_id]
 * @property {string} [user_prompt]
 * @property {string} [user_negative_prompt]
 * @property {RecipeLora[]} [loras] the LoRAs merged into the model
 * @property {SizeConditions} [size_conditions] SDXL's, when the user set them
 * @property {SourceImage} [source] img2img / inpainting: the image it started from
 * @property {HiresFix} [hires] a second, larger pass (width and height are the first's)
 * @property {Upscale} [upscale] an upscaled image: how
 */

/**
 * What an img2img or inpainting image started from (kept inputs, by hash).
 * @typedef {object} SourceImage
 * @property {string} image_sha256
 * @property {number} strength
 * @property {string} [mask_sha256]
 * @property {[number, number, number, number]} [outpaint] left, right, top, bottom
 * @property {number} [paste_back] the kept pixels pasted back, edges blurred by this many px
 */

/**
 * @typedef {object} Upscale
 * @property {number} factor
 * @property {string} upscaler
 * @property {string} source_sha256
 */

/**
 * A second pass at a larger size: the first image enlarged `factor` times, redrawn at `strength`.
 * @typedef {object} HiresFix
 * @property {number} factor
 * @property {number} strength
 */

/**
 * The ESRGAN upscaler in use.
 * @typedef {object} UpscalerInfo
 * @property {string} name
 * @property {string} path
 * @property {number} scale
 */

/**
 * An image or mask kept in the library as a run's input.
 * @typedef {object} InputInfo
 * @property {string} sha256
 * @property {string} path absolute
 * @property {number} width
 * @property {number} height
 */

/**
 * Start from an image: the kept image and mask, the strength, an outpaint's margins.
 * @typedef {object} InputParams
 * @property {string} image_sha256
 * @property {number} strength
 * @property {string | null} mask_sha256
 * @property {[number, number, number, number] | null} outpaint
 * @property {number | null} paste_back keep the unmasked pixels, edges blended over this many px
 */

/**
 * A LoRA an image was made with: its library name, weight and A1111 short hash.
 * @typedef {object} RecipeLora
 * @property {string} name
 * @property {number} weight
 * @property {string} [hash]
 */

/**
 * @typedef {object} ImageSummary
 * @property {number} id
 * @property {number} project_id
 * @property {string} file library-relative
 * @property {string} thumb library-relative
 * @property {string} original_name
 * @property {number} width
 * @property {number} height
 * @property {number} bytes
 * @property {string} format
 * @property {'generated' | 'imported'} origin
 * @property {boolean} favorite
 * @property {string} prompt
 * @property {number} created_at
 */

/** @typedef {ImageSummary & { sha256: string, recipe: Recipe }} ImageDetail */

/**
 * @typedef {object} ImageQuery
 * @property {string | null} search
 * @property {boolean} favorites_only
 * @property {string | null} cursor
 * @property {number} limit
 */

/** @typedef {{ images: ImageSummary[], next_cursor: string | null }} ImagePage */

/** @typedef {'skip' | 'keep-both' | 'replace'} OnDuplicate */

/**
 * @typedef {object} ImportReport
 * @property {number[]} imported
 * @property {string[]} skipped_duplicates
 * @property {string[]} replaced
 * @property {{ name: string, reason: string }[]} rejected
 * @property {boolean} cancelled
 */

/** @typedef {{ path: string, images: number, bytes: number }} ExportReport */

/** @typedef {{ done: number, total: number, current?: string }} TransferProgress */

/** Tiles of an upscale done, of all, and the seconds left. @typedef {{ done: number, total: number, eta_s: number | null }} UpscaleProgress */

/** @typedef {{ image_id: number, path: string }} MissingFile */

/**
 * @typedef {object} VerifyReport
 * @property {number} images_checked
 * @property {MissingFile[]} missing_files
 * @property {MissingFile[]} missing_thumbnails
 * @property {string[]} orphan_files
 * @property {{ image_id: number, path: string, expected: string, actual: string }[]} hash_mismatches
 */

/** @typedef {{ reindexed: unknown[], thumbnails_rebuilt: number, remaining: VerifyReport }} RepairReport */

/**
 * @typedef {object} LibraryInfo
 * @property {string | null} root
 * @property {string | null} error
 * @property {string | null} default_root
 * @property {boolean} env_override
 */

/**
 * @typedef {object} Style
 * @property {string} name
 * @property {string} category
 * @property {string} prompt
 * @property {string} negative_prompt
 * @property {string} description
 */

/** @typedef {{ styles: Style[], problems: { name: string, reason: string }[] }} StyleList */

/** @typedef {{ width: number, height: number, steps: number, guidance: number, scheduler: string }} ModelDefaults */

/**
 * Where a model comes from: the built-in catalog (downloaded into the Hugging Face cache), an
 * imported diffusers folder, or a single-file checkpoint used in place with an installed model's
 * configs.
 * @typedef {'catalog' | 'folder' | 'checkpoint'} ModelSource
 */

/**
 * @typedef {object} ModelEntry
 * @property {string} id catalog id, or `local:<name>` for a folder or a checkpoint
 * @property {string} name
 * @property {boolean} installed
 * @property {number | null} approx_bytes download size, catalog models only
 * @property {ModelDefaults} defaults
 * @property {Limits | null} limits set for installed models
 * @property {ModelSource} source
 * @property {string | null} location its folder or file on disk, when installed
 * @property {ModelFacts | null} facts family, precision and size on disk, when installed
 */

/**
 * What an installed model is, read from its configs and weight headers.
 * @typedef {object} ModelFacts
 * @property {Family} family
 * @property {string} family_name e.g. "Stable Diffusion XL"
 * @property {string} precision fp16, bf16, fp32 or mixed
 * @property {number} bytes size on disk
 */

/**
 * What `verify_model` found: files missing, damaged (hash mismatch) and intact.
 * @typedef {object} ModelVerifyReport
 * @property {string[]} missing
 * @property {string[]} corrupt
 * @property {string[]} ok
 */

/**
 * A LoRA of the library (`list_loras`, sorted by name); `<lora:name:weight>` in a prompt uses it.
 * @typedef {object} LoraEntry
 * @property {string} name
 * @property {string} path its copy in the LoRA library
 * @property {number} bytes
 * @property {Family | null} family the family it fits, when its layers tell
 */

/** @typedef {'sd1' | 'sd2' | 'sdxl'} Family */

/** @typedef {{ file: string, bytes_done: number, bytes_total: number }} DownloadProgress */

/** @typedef {'queued' | 'running' | 'done' | 'stopped' | 'cancelled' | 'failed'} JobState */
/** @typedef {'local' | 'cloud'} Backend */

/**
 * A job of either backend, from `list_jobs` and the `job-changed` event.
 * @typedef {object} Job
 * @property {number} id
 * @property {Backend} [backend]
 * @property {number} project_id
 * @property {string} prompt the styled prompt
 * @property {string} [user_prompt] what the user typed
 * @property {number} count
 * @property {JobState} state
 * @property {string} [error] when failed
 * @property {number[]} images library ids saved so far
 * @property {number | null} [progress] cloud only, 0..1 or null
 */

/** @typedef {'loading_model' | 'encoding_prompt' | 'denoising' | 'decoding'} Phase */

/**
 * @typedef {object} JobProgress
 * @property {number} id
 * @property {Phase} phase
 * @property {number} image 0-based
 * @property {number} images
 * @property {number} step
 * @property {number} steps
 * @property {number} elapsed_s
 * @property {number | null} eta_s
 * @property {string | null} preview a data URL
 */

/**
 * What the Create screen sends (`submit_job`; `submit_cloud_job` takes the same less
 * `model_id` and `scheduler`).
 * @typedef {object} CloudJobParams
 * @property {number} project_id
 * @property {string} prompt
 * @property {string} negative_prompt
 * @property {string[]} styles
 * @property {number} steps
 * @property {number} guidance
 * @property {number | null} seed
 * @property {number} width
 * @property {number} height
 * @property {number} count
 * @property {InputParams | null} init an image to start from
 * @property {HiresFix | null} hires a second, larger pass
 */
/**
 * SDXL's size conditioning: (height, width) pairs and a (top, left) crop; absent = the default
 * (the image's own size, no crop).
 * @typedef {object} SizeConditions
 * @property {[number, number]} [original_size]
 * @property {[number, number]} [crop_top_left]
 * @property {[number, number]} [target_size]
 */

/** @typedef {CloudJobParams & { model_id: string, scheduler: string | null, size_conditions: SizeConditions }} JobParams */

/** @typedef {{ id: number, seed: number, backend?: Backend }} Submitted */

/**
 * @typedef {object} CloudSettings
 * @property {string} api_url
 * @property {string} region
 * @property {string} user_pool_id
 * @property {string} client_id
 * @property {string} cognito_endpoint
 * @property {string} hosted_ui_domain
 */

/**
 * An API key of the signed-in account on its cloud server (never the key itself).
 * @typedef {object} ApiKeyInfo
 * @property {string} id
 * @property {string} name
 * @property {number} created_at seconds since the epoch
 * @property {boolean} revoked
 */

/**
 * A key just made: shown this once.
 * @typedef {object} CreatedApiKey
 * @property {ApiKeyInfo} info
 * @property {string} key
 */

/**
 * @typedef {object} AccountStatus
 * @property {boolean} configured
 * @property {string | null} problem
 * @property {string | null} username
 * @property {CloudSettings} settings
 */

export {};
