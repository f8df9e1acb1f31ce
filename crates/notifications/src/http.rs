//! Notifications' REST API: a signed-in customer reads the emails Bazaar sent (or is
//! about to send) them, and nobody else's.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use platform::auth::AuthUser;
use platform::db::Database;
use platform::http::{BearerAuth, EdgeResponses, Json, Query};
use platform::problem::{FieldError, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::domain::{Cursor, NotificationId, PageQuery};
use crate::store::{self, Notification};

/// The longest query string accepted, in bytes.
const MAX_QUERY_BYTES: usize = 1024;

/// The OpenAPI 3.1 document of this API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Bazaar notifications",
        version = "1",
        description = "The emails Bazaar sends a customer. Reached through the gateway under /api/notifications."
    ),
    servers((url = "/api/notifications", description = "through the gateway")),
    paths(list_notifications, get_notification),
    components(schemas(NotificationView, NotificationPage, Problem, FieldError)),
    modifiers(&BearerAuth, &EdgeResponses),
    tags((name = "notifications", description = "A customer's emails"))
)]
pub struct ApiDoc;

/// The REST routes, with the OpenAPI document at `/openapi.json`.
///
/// The routes find the token verifier in the request extensions, so the caller must
/// layer an `Extension<Verifier>` over them (as [`crate::build`] does).
pub fn router(db: Database) -> Router {
    Router::new()
        .route("/", get(list_notifications))
        .route("/{id}", get(get_notification))
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .with_state(db)
}

/// An email, as its customer sees it.
#[derive(Debug, Serialize, ToSchema)]
struct NotificationView {
    /// Its id (UUID).
    id: String,
    /// `welcome`, `order_confirmed`, `order_cancelled` or `order_refunded`.
    kind: String,
    /// The order it is about, if any.
    order_id: Option<String>,
    /// The subject line.
    subject: String,
    /// The plain-text body.
    body: String,
    /// `pending` (not sent yet), `sent`, or `failed` (the address refused it).
    status: String,
    /// When it was written, RFC 3339.
    created_at: String,
    /// When it was sent, RFC 3339.
    sent_at: Option<String>,
}

/// A page of emails, newest first.
#[derive(Debug, Serialize, ToSchema)]
struct NotificationPage {
    /// The emails.
    items: Vec<NotificationView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

/// The query parameters of a listing, as text; parsed into a `PageQuery`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Page size, 1 to 100. Default 20.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page, to continue after it.
    #[param(
        pattern = r"^[0-9]{1,18}\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    )]
    cursor: Option<String>,
}

/// The signed-in customer's emails, newest first, a page at a time.
#[utoipa::path(get, path = "/", tag = "notifications", security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of emails", body = NotificationPage),
        (status = 400, description = "An invalid parameter, named in the problem", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_notifications(
    user: AuthUser,
    State(db): State<Database>,
    RawQuery(raw): RawQuery,
    Query(params): Query<ListParams>,
) -> Result<Json<NotificationPage>, Problem> {
    if raw.as_deref().map_or(0, str::len) > MAX_QUERY_BYTES {
        return Err(Problem::invalid_field(
            "query",
            format!("must be at most {MAX_QUERY_BYTES} bytes"),
        ));
    }
    let query = PageQuery::parse(params.limit.as_deref(), params.cursor.as_deref())
        .map_err(Problem::validation)?;
    let mut items = store::page(db.pool(), &user.id, &query).await?;
    let limit = query.limit.get() as usize;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| {
            Cursor {
                created_at_ms: last.created_at_ms,
                id: last.id.clone(),
            }
            .encode()
        })
    } else {
        None
    };
    Ok(Json(NotificationPage {
        items: items.into_iter().map(view).collect(),
        next_cursor,
    }))
}

/// One of the signed-in customer's emails. Another customer's is answered 404, exactly
/// like one that does not exist.
#[utoipa::path(get, path = "/{id}", tag = "notifications", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The email's id (UUID)")),
    responses(
        (status = 200, description = "The email", body = NotificationView),
        (status = 400, description = "Not an id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such email of yours", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_notification(
    user: AuthUser,
    State(db): State<Database>,
    Path(id): Path<String>,
) -> Result<Json<NotificationView>, Problem> {
    let id = NotificationId::parse(&id)
        .ok_or_else(|| Problem::invalid_field("id", "must be a notification id (UUID)"))?;
    store::find(db.pool(), &user.id, &id)
        .await?
        .map(|notification| Json(view(notification)))
        .ok_or_else(|| Problem::not_found(format!("you have no notification {id}")))
}

fn view(notification: Notification) -> NotificationView {
    NotificationView {
        id: notification.id.to_string(),
        kind: notification.kind.as_str().to_owned(),
        order_id: notification.order_id,
        subject: notification.subject,
        body: notification.body,
        status: notification.status.as_str().to_owned(),
        created_at: rfc3339(notification.created_at_ms),
        sent_at: notification.sent_at_ms.map(rfc3339),
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
