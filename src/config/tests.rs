//! Tests of the config module: the shipped example, layering, exact error texts and secrets.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::load::{Entry, resolve, walk};
use super::value::{self, Value, parse_listen};
use super::*;

mod errors;

const EXAMPLE: &str = include_str!("../../config.example.toml");
const PASSWORD: &str = "s3cr3t-P4ss";
const TOKEN: &str = "t0k3n-V4lue";

/// An environment holding exactly `pairs`.
fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    move |var| map.get(var).cloned()
}

/// Loads `file` (as `config.toml`), `env` and `overrides`.
fn try_load(
    file: Option<&str>,
    env: &[(&str, &str)],
    overrides: &[Override],
    req: Requirements,
) -> Result<Loaded, ConfigError> {
    let file = file.map(|text| (Path::new("config.toml"), text));
    resolve(file, &env_of(env), overrides, req)
}

/// The error's lines, or a panic naming what loaded instead.
fn problems(file: Option<&str>, env: &[(&str, &str)], overrides: &[Override], req: Requirements) -> String {
    match try_load(file, env, overrides, req) {
        Ok(loaded) => panic!("expected problems, loaded {:?}", loaded.config),
        Err(err) => err.to_string(),
    }
}

#[test]
fn example_file_loads_to_the_defaults() {
    let loaded = try_load(Some(EXAMPLE), &[], &[], Requirements::None)
        .unwrap_or_else(|err| panic!("config.example.toml does not load:\n{err}"));
    assert_eq!(loaded.config, Config::default());
    for spec in keys() {
        assert_eq!(loaded.origins[spec.key], "config.toml", "{}", spec.key);
    }
}

#[test]
fn example_file_lists_every_key() {
    let table: toml::Table = EXAMPLE.parse().expect("example is TOML");
    let mut in_file = BTreeSet::new();
    for entry in walk(&table) {
        match entry {
            Entry::Key(spec, _) => assert!(in_file.insert(spec.key), "{} twice", spec.key),
            Entry::Unknown(key) | Entry::NotATable(key, _) => panic!("example holds `{key}`"),
        }
    }
    let in_spec: BTreeSet<_> = keys().map(|spec| spec.key).collect();
    assert_eq!(in_file, in_spec);
}

/// Run with `XG2G_UPDATE_EXAMPLE=1` to rewrite the example file after changing the spec table.
#[test]
fn example_file_is_the_rendered_spec() {
    let rendered = render_example();
    if std::env::var_os("XG2G_UPDATE_EXAMPLE").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
        std::fs::write(path, &rendered).expect("write config.example.toml");
        return;
    }
    assert!(
        EXAMPLE == rendered,
        "config.example.toml is stale; run XG2G_UPDATE_EXAMPLE=1 cargo test --lib config. \
         Rendered:\n{rendered}"
    );
}

#[test]
fn example_entry_reads_as_documented() {
    let rendered = render_example();
    assert!(
        rendered.contains(
            "# Address to listen on: \":PORT\" for every IPv4 interface, or \"IP:PORT\". \
             Env: XG2G_LISTEN. Default: \":8080\".\nlisten = \":8080\"\n"
        ),
        "{rendered}"
    );
    assert!(rendered.contains("\n[log]\n# "), "{rendered}");
    assert!(rendered.contains("\n[receiver]\n# "), "{rendered}");
    assert!(rendered.contains("Default: [].\nbouquets = []\n"), "{rendered}");
}

#[test]
fn defaults() {
    let config = Config::default();
    assert_eq!(config.listen, "0.0.0.0:8080".parse::<SocketAddr>().unwrap());
    assert_eq!(config.shutdown_timeout, Duration::from_secs(10));
    assert_eq!(config.api_token, None);
    assert_eq!(config.public_url, None);
    assert_eq!(config.log.level, "info");
    assert_eq!(config.log.format, LogFormat::Pretty);
    let r = &config.receiver;
    assert_eq!(r.base_url, None);
    assert_eq!((r.username.as_deref(), r.password.as_ref()), (None, None));
    assert!(r.bouquets.is_empty());
    assert_eq!((r.stream_port, r.relay_port), (8001, 17999));
    assert_eq!(r.timeout, Duration::from_secs(10));
    assert_eq!(r.retries, 3);
    assert_eq!(r.retry_backoff, Duration::from_millis(500));
}

#[test]
fn spec_table_is_consistent() {
    let mut keys_seen = BTreeSet::new();
    let mut vars_seen = BTreeSet::new();
    let mut tables_done = BTreeSet::new();
    let mut table = None;
    for spec in keys() {
        assert!(keys_seen.insert(spec.key), "{} twice", spec.key);
        let var = spec.env.expect("every key has a variable today");
        assert!(var.starts_with("XG2G_"), "{var}");
        assert!(vars_seen.insert(var), "{var} twice");
        assert!(spec.doc.ends_with('.') && !spec.doc.contains('\n'), "{}", spec.key);
        // Top-level keys first, then each table's keys together: TOML needs the first, the
        // renderers assume both.
        if spec.table() != table {
            assert!(spec.table().is_some(), "{} after a table", spec.key);
            assert!(tables_done.insert(table), "{} splits a table", spec.key);
            table = spec.table();
        }
    }
}

#[test]
fn later_layers_win_and_origins_are_recorded() {
    let file = r#"
        listen = "127.0.0.1:9000"
        [log]
        level = "debug"
        [receiver]
        base_url = "http://192.168.1.20"
        stream_port = 8002
        retries = 5
        bouquets = ["Favourites (TV)", "HD"]
    "#;
    let env = [
        ("XG2G_STREAM_PORT", "8003"),
        ("XG2G_OWI_RETRIES", "6"),
        ("XG2G_LOG_FORMAT", "json"),
        ("XG2G_UNRELATED", "ignored"),
    ];
    let overrides = [
        Override::flag("receiver.retries", "7", "--retries"),
        Override::new("receiver.base_url", "http://10.0.0.2", "demo receiver"),
    ];
    let loaded = try_load(Some(file), &env, &overrides, Requirements::Receiver).unwrap();
    let c = &loaded.config;
    assert_eq!(c.listen, "127.0.0.1:9000".parse::<SocketAddr>().unwrap());
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.receiver.stream_port, 8003);
    assert_eq!(c.receiver.retries, 7);
    assert_eq!(c.receiver.base_url.as_ref().unwrap().as_str(), "http://10.0.0.2/");
    assert_eq!(c.receiver.bouquets, ["Favourites (TV)", "HD"]);

    let origin = |key: &str| loaded.origins[key].as_str();
    assert_eq!(origin("listen"), "config.toml");
    assert_eq!(origin("log.level"), "config.toml");
    assert_eq!(origin("log.format"), "environment variable XG2G_LOG_FORMAT");
    assert_eq!(origin("receiver.stream_port"), "environment variable XG2G_STREAM_PORT");
    assert_eq!(origin("receiver.retries"), "flag --retries");
    assert_eq!(origin("receiver.base_url"), "demo receiver");
    assert_eq!(origin("receiver.timeout"), "default");
    assert_eq!(loaded.origins.len(), keys().count());
}

#[test]
fn environment_strings_parse_per_type() {
    let env = [
        ("XG2G_LISTEN", " [::1]:8080 "),
        ("XG2G_SHUTDOWN_TIMEOUT", "1m 30s"),
        ("XG2G_BOUQUET", " Favourites (TV) ,, HD ,"),
        ("XG2G_OWI_BACKOFF", "250ms"),
        ("XG2G_OWI_USER", "root"),
        ("XG2G_LOG_FORMAT", "JSON"),
        ("XG2G_PUBLIC_URL", "https://tv.example.org/xg2g"),
    ];
    let c = try_load(None, &env, &[], Requirements::None).unwrap().config;
    assert_eq!(c.listen, "[::1]:8080".parse::<SocketAddr>().unwrap());
    assert_eq!(c.shutdown_timeout, Duration::from_secs(90));
    assert_eq!(c.receiver.bouquets, ["Favourites (TV)", "HD"]);
    assert_eq!(c.receiver.retry_backoff, Duration::from_millis(250));
    assert_eq!(c.receiver.username.as_deref(), Some("root"));
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.public_url.unwrap().as_str(), "https://tv.example.org/xg2g");

    // An empty value is a value: it unsets what the file set.
    let file = "[receiver]\nbase_url = \"http://box\"\nusername = \"root\"";
    let env = [("XG2G_OWI_BASE", ""), ("XG2G_OWI_USER", "")];
    let c = try_load(Some(file), &env, &[], Requirements::None).unwrap().config;
    assert_eq!((c.receiver.base_url, c.receiver.username), (None, None));
}

#[test]
fn booleans_parse_from_strings_and_toml() {
    for (raw, want) in [("true", true), ("YES", true), ("1", true), ("no", false), ("0", false)] {
        assert!(value::from_str(Kind::Bool, raw) == Ok(Value::Bool(want)), "{raw}");
    }
    let err = value::from_str(Kind::Bool, "maybe").err();
    assert_eq!(err.as_deref(), Some("expected true or false, got \"maybe\""));
    assert!(value::from_toml(Kind::Bool, &toml::Value::Boolean(true)) == Ok(Value::Bool(true)));
    let err = value::from_toml(Kind::Bool, &toml::Value::Integer(1)).err();
    assert_eq!(err.as_deref(), Some("expected a boolean, got integer"));
}

#[test]
fn ratios_parse_from_strings_and_toml() {
    for (raw, want) in [("0", 0.0), ("0.25", 0.25), (" 1.0 ", 1.0), ("1", 1.0), ("1e-2", 0.01)] {
        assert!(value::from_str(Kind::Ratio, raw) == Ok(Value::Ratio(want)), "{raw}");
    }
    for raw in ["1.5", "-0.1", "NaN", "inf", "half", ""] {
        let err = value::from_str(Kind::Ratio, raw).err();
        assert_eq!(
            err.as_deref(),
            Some(format!("expected a ratio from 0.0 to 1.0, got {raw:?}").as_str())
        );
    }
    let toml = |text: &str| text.parse::<toml::Table>().unwrap()["r"].clone();
    assert!(value::from_toml(Kind::Ratio, &toml("r = 0.5")) == Ok(Value::Ratio(0.5)));
    assert!(value::from_toml(Kind::Ratio, &toml("r = 1")) == Ok(Value::Ratio(1.0)));
    let err = value::from_toml(Kind::Ratio, &toml("r = 2.5")).err();
    assert_eq!(err.as_deref(), Some("expected a ratio from 0.0 to 1.0, got 2.5"));
    let err = value::from_toml(Kind::Ratio, &toml("r = 2")).err();
    assert_eq!(err.as_deref(), Some("expected a ratio from 0.0 to 1.0, got 2"));
    let err = value::from_toml(Kind::Ratio, &toml("r = \"0.5\"")).err();
    assert_eq!(err.as_deref(), Some("expected a float, got string"));

    // The telemetry keys, through every layer: defaults, file, environment.
    let c = Config::default();
    assert_eq!(c.telemetry.otlp_endpoint, None);
    assert_eq!(c.telemetry.service_name, "xg2g");
    assert_eq!(c.telemetry.sampling_ratio, 1.0);
    let file = "[telemetry]\nsampling_ratio = 0.5\nservice_name = \"tv\"";
    let env = [
        ("XG2G_OTLP_ENDPOINT", "http://jaeger:4318"),
        ("XG2G_OTEL_SAMPLING_RATIO", "0.1"),
    ];
    let c = try_load(Some(file), &env, &[], Requirements::None).unwrap().config;
    assert_eq!(c.telemetry.otlp_endpoint.unwrap().as_str(), "http://jaeger:4318/");
    assert_eq!(c.telemetry.service_name, "tv");
    assert_eq!(c.telemetry.sampling_ratio, 0.1);
    let err = problems(None, &[("XG2G_OTEL_SAMPLING_RATIO", "2")], &[], Requirements::None);
    assert_eq!(
        err,
        "environment variable XG2G_OTEL_SAMPLING_RATIO: key `telemetry.sampling_ratio`: \
         expected a ratio from 0.0 to 1.0, got \"2\""
    );
}

#[test]
fn listen_addresses() {
    let ok = [
        (":8080", "0.0.0.0:8080"),
        (":0", "0.0.0.0:0"),
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("0.0.0.0:80", "0.0.0.0:80"),
        ("[::1]:8080", "[::1]:8080"),
        ("[::]:8080", "[::]:8080"),
    ];
    for (text, want) in ok {
        assert_eq!(parse_listen(text), Some(want.parse().unwrap()), "{text}");
    }
    let bad = [
        "",
        ":",
        "8080",
        "localhost:8080",
        "example.org:80",
        ":http",
        ":+80",
        ":65536",
        "127.0.0.1",
        "::1:8080",
        "[::1]",
        "127.0.0.1:8080/x",
        " :8080",
    ];
    for text in bad {
        assert_eq!(parse_listen(text), None, "{text:?}");
    }
}

#[test]
fn secrets_never_print() {
    let file = format!(
        "api_token = \"{TOKEN}\"\n[receiver]\nbase_url = \"http://192.168.1.20\"\n\
         password = \"{PASSWORD}\"\nusername = \"root\""
    );
    let loaded = try_load(Some(&file), &[], &[], Requirements::Receiver).unwrap();
    let config = &loaded.config;
    assert_eq!(config.receiver.password.as_ref().unwrap().expose(), PASSWORD);
    assert_eq!(config.api_token.as_ref().unwrap().expose(), TOKEN);

    let texts = [
        loaded.render_effective(),
        format!("{config:?}"),
        format!("{config:#?}"),
        format!("{loaded:?}"),
        format!("{}", config.receiver.password.as_ref().unwrap()),
    ];
    for text in &texts {
        assert!(!text.contains(PASSWORD) && !text.contains(TOKEN), "{text}");
    }
    assert!(texts[0].contains("password = \"***\""), "{}", texts[0]);
    assert!(texts[0].contains("api_token = \"***\""), "{}", texts[0]);

    // Error messages: the secrets themselves never fail to convert, and URLs holding them are
    // reported without them.
    let env = [
        ("XG2G_OWI_PASS", PASSWORD),
        ("XG2G_API_TOKEN", TOKEN),
        ("XG2G_PUBLIC_URL", "ftp://root:s3cr3t-P4ss@tv.example.org"),
        ("XG2G_OWI_BASE", "http://root:s3cr3t-P4ss@192.168.1.20"),
        ("XG2G_STREAM_PORT", "abc"),
    ];
    let err = problems(Some("api_token = 5"), &env, &[], Requirements::Receiver);
    assert!(!err.contains(PASSWORD) && !err.contains(TOKEN), "{err}");
    assert!(err.contains("got \"ftp://***@tv.example.org\""), "{err}");
    assert!(err.contains("credentials belong in"), "{err}");
    let Err(e) = try_load(None, &env, &[], Requirements::Receiver) else {
        panic!("expected problems");
    };
    assert!(!format!("{e:?}").contains(PASSWORD), "{e:?}");
}

#[test]
fn effective_config_shows_origins_and_loads_back() {
    let file = "[receiver]\nbase_url = \"http://192.168.1.20\"\nbouquets = [\"HD\"]";
    let env = [("XG2G_OWI_BACKOFF", "1s 500ms")];
    let overrides = [Override::flag("listen", "127.0.0.1:9000", "--listen")];
    let loaded = try_load(Some(file), &env, &overrides, Requirements::None).unwrap();
    let text = loaded.render_effective();
    let has = |line_start: &str, origin: &str| {
        text.lines()
            .any(|line| line.starts_with(line_start) && line.ends_with(&format!("# from {origin}")))
    };
    assert!(has("listen = \"127.0.0.1:9000\"", "flag --listen"), "{text}");
    assert!(has("api_token = \"\"", "default"), "{text}");
    assert!(has("base_url = \"http://192.168.1.20/\"", "config.toml"), "{text}");
    assert!(has("bouquets = [\"HD\"]", "config.toml"), "{text}");
    assert!(
        has("retry_backoff = \"1s 500ms\"", "environment variable XG2G_OWI_BACKOFF"),
        "{text}"
    );
    assert!(text.contains("\n\n[log]\nlevel = "), "{text}");
    assert!(text.contains("\n\n[receiver]\nbase_url = "), "{text}");

    // Without secrets set, the rendered text is a config file that loads to the same config.
    let again = try_load(Some(&text), &[], &[], Requirements::None).unwrap();
    assert_eq!(again.config, loaded.config);
}

const KEY: &str = "k1:0123456789abcdef0123456789abcdef";

#[test]
fn signed_streams_need_a_key_and_a_trusted_base() {
    let text = problems(Some("[auth]\nstreams = \"signed\"\n"), &[], &[], Requirements::None);
    assert_eq!(
        text,
        "config.toml: key `auth.streams`: \"signed\" needs a signing key: set auth.keys (XG2G_STREAM_KEYS) or auth.keys_file (XG2G_STREAM_KEYS_FILE)\n\
         config.toml: key `auth.streams`: \"signed\" does not trust the Host header for links: set public_url (XG2G_PUBLIC_URL) or auth.allowed_hosts (XG2G_ALLOWED_HOSTS)"
    );
    let text = problems(None, &[("XG2G_STREAM_AUTH", "closed")], &[], Requirements::None);
    assert_eq!(
        text,
        "environment variable XG2G_STREAM_AUTH: key `auth.streams`: expected \"open\" or \"signed\", got \"closed\""
    );
    let env = [
        ("XG2G_STREAM_AUTH", "signed"),
        ("XG2G_STREAM_KEYS", KEY),
        ("XG2G_ALLOWED_HOSTS", "tv.lan:8080"),
    ];
    let loaded = try_load(None, &env, &[], Requirements::None).unwrap();
    assert_eq!(loaded.config.auth.streams, StreamAuth::Signed);
    assert_eq!(loaded.config.auth.keys, [Secret::new(KEY)]);
    assert_eq!(loaded.config.auth.allowed_hosts, ["tv.lan:8080"]);
    assert_eq!(Config::default().auth.streams, StreamAuth::Open);
    let text = problems(
        None,
        &[("XG2G_ALLOWED_HOSTS", "tv.lan:8080,http://x/")],
        &[],
        Requirements::None,
    );
    assert_eq!(
        text,
        "environment variable XG2G_ALLOWED_HOSTS: key `auth.allowed_hosts`: expected hosts like \"tv.example.org\" \
         or \"tv.lan:8080\" (no scheme or path), got \"http://x/\""
    );
}

#[test]
fn signing_keys_are_checked_and_never_printed() {
    let file = "[auth]\nkeys = [\"k1:short-secret-value\", \"no colon at all\"]\n";
    let text = problems(Some(file), &[], &[], Requirements::None);
    assert_eq!(
        text,
        "config.toml: key `auth.keys`: key \"k1\": the secret has 18 bytes, at least 32 are needed; \
         entry 2: expected \"KID:SECRET\" (a key id, a colon, then the secret)"
    );
    assert!(!text.contains("short-secret-value"));
    let loaded = try_load(None, &[("XG2G_STREAM_KEYS", KEY)], &[], Requirements::None).unwrap();
    let effective = loaded.render_effective();
    assert!(effective.contains("keys = \"***\""), "{effective}");
    assert!(!effective.contains("0123456789abcdef"), "{effective}");
    assert!(!format!("{:?}", loaded.config).contains("0123456789abcdef"));
}
