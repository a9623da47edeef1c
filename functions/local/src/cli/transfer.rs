//! `keyport export|import|apply`: connections between installations and in version control.
//!
//! The server never holds an age identity: an export with secrets is decrypted here, with
//! `--identity`, before its secrets go back to a server in an import. An apply file names its
//! secrets (`{env: NAME}`, `{aws_secretsmanager: ARN}`) and this command reads them; a secret
//! written into the file itself is refused.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;
use keyport_client::{Client, Owner};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::{ClientArgs, describe, print_json, table};

/// The fields of a connection that hold a secret.
const SECRET_FIELDS: [&str; 3] = ["client_secret", "private_key", "password"];

#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// Include every connection's secrets and tokens, encrypted to --recipient (an age file in
    /// the export's `sealed`).
    #[arg(long, requires = "recipient")]
    pub with_secrets: bool,
    /// The age recipient (`age1...`, e.g. `age-keygen -y key.txt`) to encrypt the secrets to.
    #[arg(long, requires = "with_secrets")]
    pub recipient: Option<String>,
    /// Write the export to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// The export to import (JSON; `-` reads standard input).
    #[arg(long = "file", short = 'f', value_name = "FILE")]
    pub file: PathBuf,
    /// The age identity file that opens an export made with --with-secrets.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Only print what would be created, changed or left alone.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ApplyArgs {
    /// The connections file (YAML or JSON; `-` reads standard input).
    #[arg(long = "file", short = 'f', value_name = "FILE")]
    pub file: PathBuf,
    /// Only print what would be created, changed or left alone.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn export(args: &ExportArgs) -> Result<(), String> {
    let client = args.client.client()?;
    let document = client
        .export_connections(args.recipient.as_deref())
        .await
        .map_err(|e| describe(e, "", Owner::Shared))?;
    let text = format!(
        "{}\n",
        serde_json::to_string_pretty(&document).expect("JSON values serialize")
    );
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        None => {
            say_raw!("{text}");
            Ok(())
        }
    }
}

pub async fn import(args: &ImportArgs) -> Result<(), String> {
    let client = args.client.client()?;
    let mut document = read_document(&args.file)?;
    if let Some(sealed) = document.as_object_mut().and_then(|d| d.remove("sealed")) {
        let identity = args.identity.as_ref().ok_or(
            "this export holds sealed secrets: pass --identity FILE, the age identity its recipient belongs to",
        )?;
        let sealed = sealed
            .as_str()
            .ok_or("sealed is not an age file (a string)")?;
        unseal_into(&mut document, sealed, identity)?;
    }
    run(&client, &document, args.dry_run, args.client.json).await
}

pub async fn apply(args: &ApplyArgs) -> Result<(), String> {
    let client = args.client.client()?;
    let mut document = read_document(&args.file)?;
    if let Some(fields) = document.as_object_mut() {
        fields.entry("keyport_export").or_insert(json!(1));
    }
    resolve_secret_references(&mut document).await?;
    run(&client, &document, args.dry_run, args.client.json).await
}

/// A dry run, its plan printed; then, unless only a dry run was asked for, nothing
/// conflicts and something changes, the real run.
async fn run(client: &Client, document: &Value, dry_run: bool, json: bool) -> Result<(), String> {
    let fail = |e| describe(e, "", Owner::Shared);
    let plan = client
        .import_connections(document, true)
        .await
        .map_err(fail)?;
    let count = |action: &str| plan["summary"][action].as_u64().unwrap_or(0);
    let conflicts = count("conflict");
    let work = count("create") + count("change");
    if dry_run || conflicts > 0 || work == 0 {
        show(&plan, json);
        if conflicts > 0 {
            return Err(format!(
                "{conflicts} of the connections conflict; nothing was applied"
            ));
        }
        if !json && !dry_run {
            say!("nothing to change");
        }
        return Ok(());
    }
    let applied = client
        .import_connections(document, false)
        .await
        .map_err(fail)?;
    show(&applied, json);
    if applied["applied"] != true {
        return Err("the import was refused; nothing was applied".into());
    }
    Ok(())
}

fn show(plan: &Value, json: bool) {
    if json {
        print_json(plan);
        return;
    }
    let rows: Vec<Vec<String>> = plan["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|step| {
            let text = |field: &str| step[field].as_str().unwrap_or_default().to_owned();
            let detail = match step["fields"].as_array() {
                Some(fields) => fields
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                None => text("reason"),
            };
            vec![text("name"), text("action"), detail]
        })
        .collect();
    say_raw!("{}", table::render(&["NAME", "ACTION", "DETAIL"], &rows));
    let count = |action: &str| plan["summary"][action].as_u64().unwrap_or(0);
    say!(
        "{}: {} to create, {} to change, {} unchanged, {} in conflict",
        if plan["applied"] == true {
            "applied"
        } else {
            "plan"
        },
        count("create"),
        count("change"),
        count("unchanged"),
        count("conflict")
    );
}

/// A YAML or JSON file (`-`: standard input) as JSON.
fn read_document(file: &Path) -> Result<Value, String> {
    let shown = file.display().to_string();
    let text = if shown == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        text
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("cannot read {shown}: {e}"))?
    };
    parse_yaml_or_json(&text).map_err(|e| format!("{shown}: {e}"))
}

/// JSON is YAML too; one parser reads both.
fn parse_yaml_or_json(text: &str) -> Result<Value, String> {
    use yaml_rust2::YamlLoader;
    let documents = YamlLoader::load_from_str(text).map_err(|e| {
        format!(
            "is neither YAML nor JSON: {} (line {}, column {})",
            e.info(),
            e.marker().line(),
            e.marker().col() + 1
        )
    })?;
    match documents.as_slice() {
        [document] => yaml_to_json(document),
        [] => Err("is empty".into()),
        _ => Err("holds more than one YAML document".into()),
    }
}

fn yaml_to_json(yaml: &yaml_rust2::Yaml) -> Result<Value, String> {
    use yaml_rust2::Yaml;
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => json!(i),
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            .ok_or_else(|| format!("{text} is not a number JSON can hold"))?,
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => {
            Value::Array(items.iter().map(yaml_to_json).collect::<Result<_, _>>()?)
        }
        Yaml::Hash(map) => {
            let mut object = Map::new();
            for (key, value) in map {
                let key = match key {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    _ => return Err("a mapping key is not a plain text".into()),
                };
                object.insert(key, yaml_to_json(value)?);
            }
            Value::Object(object)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err("holds an alias or a value YAML cannot read".into());
        }
    })
}

/// Replaces each secret reference with the secret it names. A secret written into the file
/// is refused: the file goes into version control.
async fn resolve_secret_references(document: &mut Value) -> Result<(), String> {
    let Some(connections) = document
        .get_mut("connections")
        .and_then(Value::as_array_mut)
    else {
        return Err("the file needs `connections:`, a list of connections".into());
    };
    let mut secrets_manager = None;
    for (index, connection) in connections.iter_mut().enumerate() {
        let name = connection["name"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("#{}", index + 1));
        let Some(fields) = connection.as_object_mut() else {
            continue;
        };
        for field in SECRET_FIELDS {
            let Some(reference) = fields.get(field) else {
                continue;
            };
            let at = format!("connection {name}, {field}");
            let secret = match reference {
                Value::Object(source) if source.len() == 1 => {
                    match source.iter().next().expect("one entry") {
                        (kind, Value::String(variable)) if kind == "env" => std::env::var(variable)
                            .map_err(|_| {
                                format!("{at}: the environment variable {variable} is not set")
                            })?,
                        (kind, Value::String(arn)) if kind == "aws_secretsmanager" => {
                            read_secrets_manager(&mut secrets_manager, arn)
                                .await
                                .map_err(|e| format!("{at}: {e}"))?
                        }
                        _ => {
                            return Err(format!(
                                "{at}: a secret is {{env: NAME}} or {{aws_secretsmanager: ARN}}"
                            ));
                        }
                    }
                }
                Value::String(_) => {
                    return Err(format!(
                        "{at}: secrets are never written into an apply file; give {{env: NAME}} or {{aws_secretsmanager: ARN}}"
                    ));
                }
                _ => {
                    return Err(format!(
                        "{at}: a secret is {{env: NAME}} or {{aws_secretsmanager: ARN}}"
                    ));
                }
            };
            fields.insert(field.to_owned(), Value::String(secret));
        }
    }
    Ok(())
}

async fn read_secrets_manager(
    client: &mut Option<aws_sdk_secretsmanager::Client>,
    arn: &str,
) -> Result<String, String> {
    if client.is_none() {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        *client = Some(aws_sdk_secretsmanager::Client::new(&sdk));
    }
    let answer = client
        .as_ref()
        .expect("made above")
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            format!(
                "Secrets Manager did not give {arn}: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            )
        })?;
    answer
        .secret_string()
        .map(str::to_owned)
        .ok_or_else(|| format!("{arn} holds no text secret"))
}

/// Opens `sealed` with the identity file and puts each connection's secrets into its
/// definition. Tokens stay behind: this installation authorizes its own.
fn unseal_into(document: &mut Value, sealed: &str, identity: &Path) -> Result<(), String> {
    let shown = identity.display().to_string();
    let identities = age::IdentityFile::from_file(shown.clone())
        .map_err(|e| format!("cannot read the identity {shown}: {e}"))?
        .into_identities()
        .map_err(|e| format!("{shown} is not an age identity file: {e}"))?;
    let reader = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(sealed.as_bytes()))
        .map_err(|e| format!("sealed is not an age file: {e}"))?
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| format!("{shown} does not open this export: {e}"))?;
    let mut plaintext = Zeroizing::new(Vec::new());
    std::io::BufReader::new(reader)
        .read_to_end(&mut plaintext)
        .map_err(|e| format!("the sealed secrets could not be decrypted: {e}"))?;
    let secrets: Value = serde_json::from_slice(&plaintext)
        .map_err(|_| "the sealed secrets are not Keyport's".to_owned())?;
    let mut tokens = 0;
    for connection in document["connections"].as_array_mut().into_iter().flatten() {
        let name = connection["name"].as_str().unwrap_or_default().to_owned();
        let Some(sealed) = secrets["connections"].get(&name) else {
            continue;
        };
        tokens += sealed["tokens"].as_array().map_or(0, Vec::len);
        for field in SECRET_FIELDS {
            if let Some(value) = sealed.get(field) {
                connection[field] = value.clone();
            }
        }
    }
    if tokens > 0 {
        eprintln!(
            "keyport: {tokens} tokens in the export are not imported: authorize the connections in this installation (two installations refreshing one grant break each other)"
        );
    }
    Ok(())
}
