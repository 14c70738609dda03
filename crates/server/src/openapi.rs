//! `GET /openapi.json`: the OpenAPI 3.1 document of every route, generated (`utoipa`) from the
//! handlers' annotations and the bodies' own types, so it cannot drift from what the server
//! accepts: the doc comments are the descriptions, `deny_unknown_fields` is
//! `additionalProperties: false`.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "SelfDiffusion generation server",
        description = "Text-to-image jobs on a self-hosted server: the desktop app's generate/result \
                       protocol, the /v1 job API with Server-Sent Events and API keys, and OpenAI's \
                       image API."
    ),
    paths(
        crate::routes::health,
        crate::routes::metrics,
        crate::routes::generate,
        crate::routes::upscale,
        crate::routes::result,
        crate::routes::image,
        crate::v1::create,
        crate::v1::show,
        crate::v1::cancel,
        crate::v1::events,
        crate::v1::create_key,
        crate::v1::list_keys,
        crate::v1::revoke_key,
        crate::openai::generate,
        document,
    ),
    modifiers(&Credentials),
    tags(
        (name = "jobs", description = "The desktop app's protocol (seed 000)"),
        (name = "v1", description = "Generations: create, follow, stream, cancel"),
        (name = "keys", description = "API keys, managed by their owner with a Cognito token"),
        (name = "openai", description = "OpenAI's image API"),
        (name = "server", description = "Health, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// The two ways to sign a request.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "cognito",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A Cognito ID or access token of the user pool the server trusts",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key (`sdk_…`, from POST /v1/keys); also taken as `Authorization: Bearer sdk_…`",
            ))),
        );
    }
}

/// The OpenAPI document of this server.
#[utoipa::path(get, path = "/openapi.json", tag = "server",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")))]
pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_its_bodies() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for path in [
            "/health",
            "/metrics",
            "/generate",
            "/upscale",
            "/result",
            "/images/{job}/{file}",
            "/v1/generations",
            "/v1/generations/{id}",
            "/v1/generations/{id}/events",
            "/v1/keys",
            "/v1/keys/{id}",
            "/v1/images/generations",
            "/openapi.json",
        ] {
            assert!(paths.contains(&path), "{path} missing from {paths:?}");
        }
        let id = &doc["paths"]["/v1/generations/{id}"];
        assert!(id["get"].is_object() && id["delete"].is_object());
        let schemas = &doc["components"]["schemas"];
        let request = &schemas["GenerateRequest"];
        let required: Vec<&str> = request["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(required, ["prompt", "samples"]);
        assert_eq!(
            request["additionalProperties"], false,
            "unknown fields are refused"
        );
        assert_eq!(
            request["properties"]["prompt"]["description"],
            "The prompt."
        );
        for schema in [
            "GenerationCreate",
            "Generation",
            "JobStatus",
            "ServerInfo",
            "Limits",
            "Status",
            "ImagesRequest",
        ] {
            assert!(schemas[schema].is_object(), "{schema} missing");
        }
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["api_key"]["name"], "X-API-Key");
        assert_eq!(schemes["cognito"]["scheme"], "bearer");
    }
}
