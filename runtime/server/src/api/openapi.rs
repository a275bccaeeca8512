//! The OpenAPI 3.1 document of the API, generated from the handlers and
//! types themselves, served at `/v1/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, audit, exec, memory, runs, tools, usage};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "warden",
        description = "Tenants' tools, code and runs in WebAssembly sandboxes. Every request carries an API key: `Authorization: Bearer wdn_…`; the key decides the tenant."
    ),
    paths(
        tools::list,
        tools::call,
        exec::exec,
        runs::submit,
        runs::list,
        runs::show,
        runs::events,
        runs::cancel,
        runs::resume,
        memory::store,
        memory::get,
        memory::update,
        memory::delete,
        memory::search,
        memory::find,
        usage::usage,
        audit::entries,
        audit::verify,
        admin::list_tenants,
        admin::add_tenant,
        admin::show_tenant,
        admin::remove_tenant,
        admin::list_keys,
        admin::create_key,
        admin::revoke_key,
    ),
    components(schemas(super::ErrorBody, super::ErrorDetail)),
    modifiers(&Bearer),
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("wdn_<id>_<secret>")
                    .build(),
            ),
        );
    }
}

/// `GET /v1/openapi.json`: needs no key.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    Json(doc)
}
