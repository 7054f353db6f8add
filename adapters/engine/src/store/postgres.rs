//! The PostgreSQL backend: one database that several engines share.
//!
//! tokio-postgres is asynchronous and the store is not (the engine calls it from
//! `spawn_blocking`, as it does SQLite), so each call blocks on the engine's own runtime, where
//! the connection runs. A connection that dropped (a restarted server) is opened again by the
//! next call outside a transaction; the call that saw it drop fails, and the engine keeps its
//! rows and retries.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::runtime::Handle;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, NoTls, TlsConnect};
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{Client, Config, Socket, Statement};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;

use super::schema::POSTGRES;
use super::sql::{Cell, Conn, Row, Value};
use crate::error::Error;

/// How long one statement, or opening a connection, may take before the call fails (and the
/// engine retries later): a server that stopped answering must not hold the engine's flushes.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Any constant: the advisory lock engines take turns on to migrate.
const MIGRATION_LOCK: i64 = 0x0053_5542_4e4f_4445;

/// A `postgres://` URL: where the database is, who to log in as, and how to use TLS.
#[derive(Clone)]
pub struct PostgresUrl {
    config: Config,
    /// `sslrootcert`, `sslcert`, `sslkey`: files libpq takes in the URL and tokio-postgres
    /// does not.
    tls_files: [Option<PathBuf>; 3],
}

impl PartialEq for PostgresUrl {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config && self.tls_files == other.tls_files
    }
}

impl Eq for PostgresUrl {}

impl PostgresUrl {
    /// Whether `text` is a PostgreSQL URL rather than a file path.
    pub(super) fn claims(text: &str) -> bool {
        text.starts_with("postgres://") || text.starts_with("postgresql://")
    }

    /// Parses `postgres://user[:password]@host[:port]/database[?options]`. TLS follows
    /// `sslmode`: `disable` and `prefer` connect in the clear; `require`, `verify-ca` and
    /// `verify-full` use TLS and check the server's certificate and name against `sslrootcert`
    /// (a PEM file) or the system's store; `sslcert` and `sslkey` present a client certificate.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        const FORM: &str = "postgres://user[:password]@host[:port]/database[?sslmode=...]";
        let (base, query) = text.split_once('?').unwrap_or((text, ""));
        let mut tls_files = [None, None, None];
        let mut verify = false;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslrootcert" => tls_files[0] = Some(PathBuf::from(value)),
                "sslcert" => tls_files[1] = Some(PathBuf::from(value)),
                "sslkey" => tls_files[2] = Some(PathBuf::from(value)),
                "sslmode" if value == "verify-ca" || value == "verify-full" => verify = true,
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() { String::new() } else { format!("?{}", kept.join("&")) };
        let mut config = Config::from_str(&format!("{base}{rest}")).map_err(|_| FORM)?;
        if verify {
            config.ssl_mode(SslMode::Require);
        }
        if config.get_ssl_mode() == SslMode::Prefer {
            // libpq's `prefer` tries TLS without checking the certificate; this engine never
            // uses TLS it does not check, so `prefer` (the default) connects in the clear.
            config.ssl_mode(SslMode::Disable);
        }
        if config.get_hosts().is_empty() {
            return Err("a host: postgres://user@HOST/database");
        }
        if config.get_user().is_none() {
            return Err("a user name: postgres://USER@host/database");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // A server gone without a word (a failover behind a virtual address) is noticed in
        // about a minute rather than the kernel's quarter of an hour, unless the URL says
        // otherwise.
        if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            config.keepalives_idle(Duration::from_secs(30)).keepalives_interval(Duration::from_secs(10));
            config.keepalives_retries(3).tcp_user_timeout(Duration::from_secs(60));
        }
        Ok(Self { config, tls_files })
    }
}

/// `text` with the password of a URL's `user:password@` (everything up to the first `@`, as
/// tokio-postgres reads it) and of a `password=` option left out, for messages.
pub(super) fn redacted(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else { return text.to_owned() };
    let with_login = match rest.split_once('@') {
        Some((login, host)) => match login.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => text.to_owned(),
        },
        None => text.to_owned(),
    };
    // libpq also takes the password as an option.
    match with_login.split_once('?') {
        Some((base, query)) => {
            let hide =
                |pair: &str| if pair.starts_with("password=") { "password=***".to_owned() } else { pair.to_owned() };
            format!("{base}?{}", query.split('&').map(hide).collect::<Vec<_>>().join("&"))
        }
        None => with_login,
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password: this is what errors and logs show.
        let c = &self.config;
        write!(f, "postgres://{}@", c.get_user().unwrap_or_default())?;
        for (n, host) in c.get_hosts().iter().enumerate() {
            let sep = if n == 0 { "" } else { "," };
            match host {
                Host::Tcp(name) => write!(f, "{sep}{name}")?,
                Host::Unix(path) => write!(f, "{sep}{}", path.display())?,
            }
            if let Some(port) = c.get_ports().get(n).or(c.get_ports().first()) {
                write!(f, ":{port}")?;
            }
        }
        write!(f, "/{}", c.get_dbname().unwrap_or_default())
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

/// An open connection to the shared database.
pub(super) struct Postgres {
    url: PostgresUrl,
    handle: Handle,
    client: Client,
    /// Statements prepared on this connection, by the address of their SQLite-dialect text.
    prepared: HashMap<(usize, usize), Statement>,
    in_transaction: bool,
    /// A call timed out: the connection may be dead without knowing it, so the next call
    /// outside a transaction opens a new one.
    broken: std::cell::Cell<bool>,
}

impl Postgres {
    /// Connects and brings the schema up to date, one engine at a time.
    pub(super) fn connect(url: &PostgresUrl) -> Result<Self, Error> {
        let handle = Handle::try_current()
            .map_err(|_| Error::Database(format!("{url}: PostgreSQL is reached through a tokio runtime")))?;
        let broken = std::cell::Cell::new(false);
        let client = block(&handle, url, &broken, open(url))?;
        let mut store =
            Self { url: url.clone(), handle, client, prepared: HashMap::new(), in_transaction: false, broken };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), Error> {
        let url = self.url.to_string();
        let client = &mut self.client;
        block(&self.handle, &self.url, &self.broken, async move {
            let tx = client.transaction().await.map_err(|e| pg_error(&url, e))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(|e| pg_error(&url, e))?;
            let fresh = tx
                .query_one("SELECT to_regclass('subnode.subnode_meta') IS NULL", &[])
                .await
                .map_err(|e| pg_error(&url, e))?
                .get::<_, bool>(0);
            if fresh {
                let ours = tx
                    .query_one("SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'subnode'", &[])
                    .await
                    .map_err(|e| pg_error(&url, e))?
                    .get::<_, i64>(0);
                if ours > 0 {
                    return Err(Error::Database(format!(
                        "{url}: schema \"subnode\" holds tables that are not SubNodeSync's"
                    )));
                }
                tx.batch_execute(
                    "CREATE SCHEMA IF NOT EXISTS subnode;
                     CREATE TABLE subnode.subnode_meta (version BIGINT NOT NULL, rev BIGINT NOT NULL);
                     INSERT INTO subnode.subnode_meta VALUES (0, 0);",
                )
                .await
                .map_err(|e| pg_error(&url, e))?;
            }
            let found = tx
                .query_one("SELECT version FROM subnode.subnode_meta", &[])
                .await
                .map_err(|e| pg_error(&url, e))?
                .get::<_, i64>(0);
            let found = usize::try_from(found).unwrap_or(usize::MAX);
            if found > POSTGRES.len() {
                return Err(Error::SchemaTooNew { found, known: POSTGRES.len() });
            }
            for (i, step) in POSTGRES.iter().enumerate().skip(found) {
                tx.batch_execute(step).await.map_err(|e| pg_error(&url, e))?;
                let version = i64::try_from(i + 1).unwrap_or(i64::MAX);
                tx.execute("UPDATE subnode.subnode_meta SET version = $1", &[&version])
                    .await
                    .map_err(|e| pg_error(&url, e))?;
            }
            tx.commit().await.map_err(|e| pg_error(&url, e))
        })
    }

    /// Opens the connection again if it dropped (or a call on it timed out) and no transaction
    /// was running on it.
    fn reconnect_if_closed(&mut self) -> Result<(), Error> {
        if (self.client.is_closed() || self.broken.get()) && !self.in_transaction {
            self.prepared.clear();
            self.client = block(&self.handle, &self.url, &self.broken, open(&self.url))?;
            self.broken.set(false);
        }
        Ok(())
    }

    fn statement(&mut self, sql: &'static str) -> Result<Statement, Error> {
        // First, so a statement prepared on a connection that has gone is not used.
        self.reconnect_if_closed()?;
        let key = (sql.as_ptr() as usize, sql.len());
        if let Some(statement) = self.prepared.get(&key) {
            return Ok(statement.clone());
        }
        let text = translate(sql);
        self.reconnect_if_closed()?;
        let (client, url) = (&self.client, &self.url);
        let statement = block(&self.handle, url, &self.broken, async {
            client.prepare(&text).await.map_err(|e| pg_error(&url.to_string(), e))
        })?;
        self.prepared.insert(key, statement.clone());
        Ok(statement)
    }
}

impl Conn for Postgres {
    fn execute(&mut self, sql: &'static str, params: &[Value<'_>]) -> Result<u64, Error> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        self.reconnect_if_closed()?;
        let (client, url) = (&self.client, &self.url);
        block(&self.handle, url, &self.broken, async {
            client.execute(&statement, &params).await.map_err(|e| pg_error(&url.to_string(), e))
        })
    }

    fn execute_each(&mut self, sql: &'static str, each: &[&[Value<'_>]]) -> Result<Vec<u64>, Error> {
        let statement = self.statement(sql)?;
        let each: Vec<Vec<&(dyn ToSql + Sync)>> =
            each.iter().map(|params| params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()).collect();
        self.reconnect_if_closed()?;
        let (client, url) = (&self.client, &self.url);
        // tokio-postgres pipelines statements whose futures are polled together: one round trip
        // for the whole batch rather than one per row.
        let calls = each.iter().map(|params| client.execute(&statement, params));
        let changed = block(&self.handle, url, &self.broken, async {
            futures_util::future::try_join_all(calls).await.map_err(|e| pg_error(&url.to_string(), e))
        })?;
        Ok(changed)
    }

    fn query(&mut self, sql: &'static str, params: &[Value<'_>]) -> Result<Vec<Row>, Error> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        self.reconnect_if_closed()?;
        let (client, url) = (&self.client, &self.url);
        let rows = block(&self.handle, url, &self.broken, async {
            client.query(&statement, &params).await.map_err(|e| pg_error(&url.to_string(), e))
        })?;
        Ok(rows.iter().map(read_row).collect())
    }

    fn batch(&mut self, sql: &str) -> Result<(), Error> {
        self.reconnect_if_closed()?;
        let (client, url) = (&self.client, &self.url);
        let done = block(&self.handle, url, &self.broken, async {
            client.batch_execute(sql).await.map_err(|e| pg_error(&url.to_string(), e))
        });
        match sql {
            "BEGIN" => self.in_transaction = done.is_ok(),
            "COMMIT" | "ROLLBACK" => self.in_transaction = false,
            _ => {}
        }
        done
    }

    fn schema_version(&mut self) -> Result<usize, Error> {
        let rows = self.query("SELECT version FROM subnode_meta", &[])?;
        let version = rows.first().and_then(|row| row.int_as(0).ok());
        version.ok_or_else(|| Error::Database(format!("{}: no schema version recorded", self.url)))
    }
}

/// SQLite's spelling of a statement in PostgreSQL's: numbered parameters are `$n`, `instr` is
/// `strpos`, and `commands.seq` stands in for `rowid`.
fn translate(sql: &str) -> String {
    sql.replace('?', "$").replace("instr(", "strpos(").replace("rowid", "seq")
}

/// Opens a connection and points it at the `subnode` schema.
async fn open(url: &PostgresUrl) -> Result<Client, Error> {
    let at = url.to_string();
    let client = if url.config.get_ssl_mode() == SslMode::Disable {
        let (client, connection) = url.config.connect(NoTls).await.map_err(|e| pg_error(&at, e))?;
        tokio::spawn(drive(at.clone(), connection));
        client
    } else {
        let [ca, cert, key] = url.tls_files.clone();
        let host = match url.config.get_hosts().first() {
            Some(Host::Tcp(name)) => name.clone(),
            _ => return Err(Error::Database(format!("{at}: TLS needs a host name, not a socket path"))),
        };
        let config = subnodesync_host::tls_client_config(ca, cert, key, &host)
            .map_err(|e| Error::Database(format!("{at}: TLS: {e}")))?;
        let (client, connection) = url.config.connect(Rustls(config)).await.map_err(|e| pg_error(&at, e))?;
        tokio::spawn(drive(at.clone(), connection));
        client
    };
    // A transaction left open by an engine that stopped answering must not hold the revision
    // counter's lock (and every other engine's writes) for long.
    client
        .batch_execute("SET search_path TO subnode; SET idle_in_transaction_session_timeout = '60s'")
        .await
        .map_err(|e| pg_error(&at, e))?;
    // Any text a node sends must fit, or one message would fail every later flush.
    let encoding: String = client.query_one("SHOW server_encoding", &[]).await.map_err(|e| pg_error(&at, e))?.get(0);
    if encoding != "UTF8" && encoding != "SQL_ASCII" {
        return Err(Error::Database(format!(
            "{at}: the database's encoding is {encoding}; it must be UTF8 (CREATE DATABASE … ENCODING 'UTF8')"
        )));
    }
    Ok(client)
}

/// Runs a connection until it closes.
async fn drive<S, T>(url: String, connection: tokio_postgres::Connection<S, T>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    if let Err(e) = connection.await {
        tracing::warn!(database = %url, error = %e, "the PostgreSQL connection closed");
    }
}

/// Runs `call` on the engine's runtime from a blocking thread, for at most [`CALL_TIMEOUT`].
/// A call that times out marks the connection `broken`.
fn block<T>(
    handle: &Handle,
    url: &PostgresUrl,
    broken: &std::cell::Cell<bool>,
    call: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    handle.block_on(async {
        tokio::time::timeout(CALL_TIMEOUT, call).await.unwrap_or_else(|_| {
            broken.set(true);
            Err(Error::Database(format!("{url}: no answer in {}s", CALL_TIMEOUT.as_secs())))
        })
    })
}

fn pg_error(url: &str, e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => Error::Database(format!("{url}: {} ({})", db.message(), db.code().code())),
        None => {
            let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
            Error::Database(format!("{url}: {e}{cause}"))
        }
    }
}

/// A row as cells, by each column's type.
fn read_row(row: &tokio_postgres::Row) -> Row {
    let cells = row.columns().iter().enumerate().map(|(i, column)| {
        let cell = match *column.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i).map(|v| v.map(Cell::Int)),
            Type::INT4 => row.try_get::<_, Option<i32>>(i).map(|v| v.map(|n| Cell::Int(n.into()))),
            Type::INT2 => row.try_get::<_, Option<i16>>(i).map(|v| v.map(|n| Cell::Int(n.into()))),
            Type::BOOL => row.try_get::<_, Option<bool>>(i).map(|v| v.map(|b| Cell::Int(b.into()))),
            Type::TEXT | Type::VARCHAR | Type::NAME => row.try_get::<_, Option<String>>(i).map(|v| v.map(Cell::Text)),
            _ => return Cell::Other("of a type the store does not read"),
        };
        cell.map_or(Cell::Other("unreadable"), |v| v.unwrap_or(Cell::Null))
    });
    Row(cells.collect())
}

impl ToSql for Value<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Self::Null => Ok(IsNull::Yes),
            Self::Int(n) => match *ty {
                Type::INT4 => i32::try_from(n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(n)?.to_sql(ty, out),
                _ => n.to_sql(ty, out),
            },
            // PostgreSQL text cannot hold NUL, which JSON can spell (`\u0000`): rather than
            // refusing the whole batch, it is stored as U+FFFD.
            Self::Text(t) if t.contains('\0') => t.replace('\0', "\u{FFFD}").to_sql(ty, out),
            Self::Text(t) => t.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty)
            || <i32 as ToSql>::accepts(ty)
            || <i16 as ToSql>::accepts(ty)
            || <&str as ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

/// rustls for tokio-postgres, with the configuration nodes use for `mqtts://`.
#[derive(Clone)]
struct Rustls(Arc<ClientConfig>);

/// One TLS handshake to come.
struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

/// A TLS session to the server.
struct RustlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl MakeTlsConnect<Socket> for Rustls {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        let name =
            ServerName::try_from(domain.to_owned()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsConnect { config: self.0.clone(), name })
    }
}

impl TlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config).connect(self.name, stream).await?;
            Ok(RustlsStream(Box::new(tls)))
        })
    }
}

impl tokio_postgres::tls::TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for RustlsStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::history::tests::result;
    use crate::store::{Batch, Database, Location};
    use subnodesync_fixtures::Postgres as Server;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    #[test]
    fn urls_parse_as_libpq_takes_them_and_never_show_the_password() {
        let url = PostgresUrl::parse(
            "postgres://fleet:s3cret@db.example:6543/subnode?sslmode=verify-full&sslrootcert=/ca.pem",
        )
        .unwrap();
        assert_eq!(url.to_string(), "postgres://fleet@db.example:6543/subnode");
        assert_eq!(
            (url.config.get_ssl_mode(), url.tls_files[0].as_deref()),
            (SslMode::Require, Some("/ca.pem".as_ref()))
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(PostgresUrl::parse("postgres://h/db").err(), Some("a user name: postgres://USER@host/database"));
        assert!(PostgresUrl::parse("postgres://u@h/db?colour=blue").is_err());
        assert_eq!(redacted("postgres://u:pw@h/db?password=pw2&x=1"), "postgres://u:***@h/db?password=***&x=1");
        assert_eq!(redacted("postgres://u:s3/c?r#t@h:5x/db"), "postgres://u:***@h:5x/db");
        let refused = Location::parse("postgres://u:pw@h:notaport/db").unwrap_err().to_string();
        assert!(refused.contains("SUBNODE_DB") && !refused.contains("pw@"), "{refused}");
        assert!(Location::parse("mysql://u@h/db").is_err());
    }

    #[test]
    fn engines_starting_together_migrate_once() {
        let server = Server::start().unwrap();
        let runtime = runtime();
        let location = Location::parse(&server.url()).unwrap();
        let opened: Vec<_> = (0..6)
            .map(|_| {
                let (location, handle) = (location.clone(), runtime.handle().clone());
                std::thread::spawn(move || {
                    let _inside = handle.enter();
                    Database::open(&location).and_then(|mut db| db.schema_version())
                })
            })
            .collect();
        for done in opened {
            assert_eq!(done.join().unwrap().unwrap(), POSTGRES.len());
        }
        let _inside = runtime.enter();
        let mut db = Database::open(&location).unwrap();
        assert_eq!(db.count("SELECT COUNT(*) FROM subnode_meta"), 1);
    }

    #[test]
    fn a_restarted_server_is_reconnected_and_nothing_written_is_lost() {
        let mut server = Server::start().unwrap();
        let runtime = runtime();
        let _inside = runtime.enter();
        let mut db = Database::open(&Location::parse(&server.url()).unwrap()).unwrap();
        let batch = Batch { results: vec![result("r1", "done", "ok", 1)], ..Batch::default() };
        db.write(&batch).unwrap();
        server.restart().unwrap();
        // The call that finds the connection gone may fail; the next one reconnects.
        let batch = Batch { results: vec![result("r2", "done", "ok", 1)], ..Batch::default() };
        if db.write(&batch).is_err() {
            db.write(&batch).unwrap();
        }
        assert_eq!(db.count("SELECT COUNT(*) FROM results"), 2);
    }

    #[test]
    fn text_postgresql_cannot_index_or_hold_is_stored_anyway() {
        let server = Server::start().unwrap();
        let runtime = runtime();
        let _inside = runtime.enter();
        let mut db = Database::open(&Location::parse(&server.url()).unwrap()).unwrap();
        // A NUL (JSON's \u0000) and a progress message far longer than an index entry.
        let results = vec![result("r1", "in_progress", &"x".repeat(100_000), 1), result("r1", "done", "a\0b", 1)];
        db.write(&Batch { results, ..Batch::default() }).unwrap();
        let kept = db.history(1, None).unwrap();
        assert!(kept.is_empty(), "no command r1: the results are orphans, kept outside the history");
        assert_eq!(db.count("SELECT COUNT(*) FROM results WHERE message = 'a\u{FFFD}b'"), 1);
        assert_eq!(db.count("SELECT COUNT(*) FROM results WHERE length(message) = 100000"), 1);
    }
}
