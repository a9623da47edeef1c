//! Schemas of wire shapes no single type derives: a create request (the update type with what
//! create requires), a connection with its token health, a boolean that is always true, and
//! the description document itself.

use std::borrow::Cow;

use serde_json::json;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::{Connection, ConnectionInput, TokenHealth};
use crate::service::AdministeredConnection;

/// The fields a create request must carry; `Fields::validate` refuses a create without them.
const REQUIRED_ON_CREATE: [&str; 3] = ["name", "grant_type", "client_id"];

/// `POST /connections`'s body: the fields of [`ConnectionInput`] (the one type both create and
/// update read), of which create requires some, non-null.
pub struct ConnectionCreate;

impl PartialSchema for ConnectionCreate {
    fn schema() -> RefOr<Schema> {
        let RefOr::T(Schema::Object(mut object)) = ConnectionInput::schema() else {
            unreachable!("ConnectionInput's schema is an object");
        };
        object.description = Some(
            "A connection to create. Unknown fields are refused; null is the same as absent. \
             The credential its client_auth needs (client_secret or private_key) is required."
                .into(),
        );
        for name in REQUIRED_ON_CREATE {
            // A field renamed in ConnectionInput must be renamed in REQUIRED_ON_CREATE too.
            let property = object
                .properties
                .get_mut(name)
                .unwrap_or_else(|| panic!("ConnectionInput has no field {name}"));
            *property = non_null(property.clone());
            object.required.push(name.to_owned());
        }
        // Secrets never in examples: the placeholder says where the value goes.
        object.example = Some(json!({
            "name": "Acme CRM",
            "description": "The CRM, production tenant",
            "provider": "custom",
            "grant_type": "authorization_code_pkce",
            "client_id": "keyport",
            "client_secret": "<the client secret the provider issued>",
            "authorization_url": "https://login.acme.example/authorize",
            "token_url": "https://login.acme.example/token",
            "issuer": "https://login.acme.example",
            "scopes": "openid,api",
            "invited_roles": ["bots"]
        }));
        RefOr::T(Schema::Object(object))
    }
}

impl ToSchema for ConnectionCreate {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ConnectionCreate")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <ConnectionInput as ToSchema>::schemas(schemas);
    }
}

/// The connection routes' answer, named `Connection` in the description: the connection's
/// fields and `token_health`, one closed object. The derive would describe the flattened
/// connection as `allOf` with the closed `Connection` schema, which refuses `token_health`.
impl PartialSchema for AdministeredConnection {
    fn schema() -> RefOr<Schema> {
        let RefOr::T(Schema::Object(mut object)) = Connection::schema() else {
            unreachable!("Connection's schema is an object");
        };
        object.description = Some(
            "A connection as Keyport returns it: secrets never appear, only whether each is \
             set; with its tokens' health, read from their metadata (no token is opened for it)."
                .into(),
        );
        object.properties.insert(
            "token_health".into(),
            RefOr::Ref(utoipa::openapi::Ref::from_schema_name(TokenHealth::name())),
        );
        object.required.push("token_health".into());
        let health_example = TokenHealth::schema();
        let RefOr::T(Schema::Object(health)) = health_example else {
            unreachable!("TokenHealth's schema is an object");
        };
        if let Some(example) = object.example.as_mut().and_then(|e| e.as_object_mut()) {
            example.insert(
                "token_health".into(),
                health.example.expect("TokenHealth has an example"),
            );
        }
        RefOr::T(Schema::Object(object))
    }
}

impl ToSchema for AdministeredConnection {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Connection")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <Connection as ToSchema>::schemas(schemas);
        schemas.push((TokenHealth::name().into_owned(), TokenHealth::schema()));
        <TokenHealth as ToSchema>::schemas(schemas);
    }
}

/// `schema` without its `null`: `[T, "null"]` becomes `T`, `oneOf [X, null]` becomes `X`.
fn non_null(schema: RefOr<Schema>) -> RefOr<Schema> {
    match schema {
        RefOr::T(Schema::Object(mut object)) => {
            if let SchemaType::Array(types) = &object.schema_type {
                let types: Vec<Type> = types
                    .iter()
                    .filter(|t| **t != Type::Null)
                    .cloned()
                    .collect();
                object.schema_type = match types.as_slice() {
                    [single] => SchemaType::Type(single.clone()),
                    _ => SchemaType::Array(types),
                };
            }
            RefOr::T(Schema::Object(object))
        }
        RefOr::T(Schema::OneOf(one_of)) => {
            let mut rest: Vec<RefOr<Schema>> = one_of
                .items
                .into_iter()
                .filter(|item| !is_null(item))
                .collect();
            assert_eq!(rest.len(), 1, "a nullable oneOf of one schema");
            rest.remove(0)
        }
        other => other,
    }
}

fn is_null(schema: &RefOr<Schema>) -> bool {
    matches!(
        schema,
        RefOr::T(Schema::Object(Object {
            schema_type: SchemaType::Type(Type::Null),
            ..
        }))
    )
}

/// A boolean that is always `true` (`schema_with` of such fields).
pub fn always_true() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([true]))
        .build()
}

/// What `GET /openapi.json` answers: an OpenAPI document.
pub struct Document;

impl PartialSchema for Document {
    fn schema() -> RefOr<Schema> {
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("An OpenAPI 3.1 document: this one."))
            .build();
        object.required = ["openapi", "info", "paths"].map(str::to_owned).to_vec();
        RefOr::T(Schema::Object(object))
    }
}

impl ToSchema for Document {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("OpenApiDocument")
    }
}

/// What `GET /health` answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    pub status: HealthStatus,
}

/// The server is up.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
}

/// What `GET /ready` answers: whether the store and the key service answer, nothing more.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"status": "ready", "checks": {"store": "ok", "keys": "ok"}}))]
pub struct Ready {
    pub status: ReadyStatus,
    pub checks: ReadyChecks,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
    NotReady,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ReadyChecks {
    /// The store answered a read.
    pub store: CheckStatus,
    /// The key service issued a data key.
    pub keys: CheckStatus,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    Unavailable,
}

impl From<bool> for CheckStatus {
    fn from(answered: bool) -> Self {
        if answered {
            CheckStatus::Ok
        } else {
            CheckStatus::Unavailable
        }
    }
}
