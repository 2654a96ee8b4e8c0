//! The scratch database a rehearsal works in: `rollout_rehearsal_<tag>_<id>` on the server of
//! `REHEARSAL_DATABASE_URL`, created empty, dropped at the end. It is never the live diary: the
//! name is the rehearsal's own, and a rehearsal URL that names the live diary's database (same
//! host, port and database) is refused before anything is created.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::Connection as _;

use super::super::super::config::Secret;
use super::super::super::redact::without_urls;

pub struct Scratch {
    /// The database's name.
    pub name: String,
    /// Its URL: the rehearsal URL's, with this database.
    pub url: Secret,
    admin: PgConnectOptions,
}

/// Only its name: the options hold the password.
impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Host, port and database of a URL, as PostgreSQL would connect to them.
fn place(options: &PgConnectOptions) -> (String, u16, Option<String>) {
    (options.get_host().to_ascii_lowercase(), options.get_port(), options.get_database().map(str::to_string))
}

/// The name of rehearsal `id`'s scratch database.
pub fn name_of(tag: &str, id: i64) -> String {
    format!("rollout_rehearsal_{tag}_{id}")
}

/// The scratch database of rehearsal `id`, or why there can be none.
pub fn for_rehearsal(admin_url: &Secret, diary_url: Option<&Secret>, tag: &str, id: i64) -> Result<Scratch, String> {
    let bad = |what: &str| format!("REHEARSAL_DATABASE_URL {what}");
    let admin = PgConnectOptions::from_str(admin_url.expose()).map_err(|_| bad("is not a PostgreSQL URL"))?;
    let name = name_of(tag, id);
    let url = with_database(admin_url.expose(), &name).map_err(|e| bad(&e))?;
    let (host, port, admin_db) = place(&admin);
    if let Some(diary) = diary_url.and_then(|u| PgConnectOptions::from_str(u.expose()).ok()) {
        let (d_host, d_port, d_db) = place(&diary);
        let same_server = d_host == host && d_port == port;
        if same_server && (d_db == admin_db || d_db.as_deref() == Some(name.as_str())) {
            return Err(bad("names the live diary database: rehearsals need a database of their own to connect to"));
        }
    }
    Ok(Scratch { name, url: Secret::new(url), admin })
}

/// Query parameters that would take a connection elsewhere than the URL's own host and
/// database (libpq, sqlx and SQLAlchemy all let them override it).
const ELSEWHERE: [&str; 7] = ["dbname", "host", "hostaddr", "port", "service", "options", "user"];

/// `url` naming database `name` instead of its own: its text otherwise as written (the password
/// exactly as configured, so that it stays masked), refused when a query parameter could take a
/// connection elsewhere.
fn with_database(url: &str, name: &str) -> Result<String, String> {
    let (scheme, rest) = url.split_once("://").ok_or("is not a URL")?;
    if !matches!(scheme, "postgres" | "postgresql") {
        return Err("must be a postgres:// URL".into());
    }
    let (base, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if ELSEWHERE.contains(&key.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "may not carry {key}= (a rehearsal's connections must go to its scratch database only)"
            ));
        }
    }
    let authority = base.split_once('/').map_or(base, |(a, _)| a);
    if authority.rsplit('@').next().is_none_or(|h| h.is_empty() || h.starts_with(':')) {
        return Err("must name a host".into());
    }
    Ok(match query {
        Some(q) => format!("{scheme}://{authority}/{name}?{q}"),
        None => format!("{scheme}://{authority}/{name}"),
    })
}

impl Scratch {
    async fn admin(&self) -> Result<sqlx::PgConnection, String> {
        sqlx::PgConnection::connect_with(&self.admin)
            .await
            .map_err(|e| format!("cannot connect to the rehearsal server: {}", without_urls(&e.to_string())))
    }

    /// A connection to it, refused unless PostgreSQL says it is connected to the scratch
    /// database (whatever the URL or the environment might have said).
    pub async fn connect(&self) -> Result<sqlx::PgConnection, String> {
        let mut conn = sqlx::PgConnection::connect(self.url.expose())
            .await
            .map_err(|e| format!("cannot connect to {}: {}", self.name, without_urls(&e.to_string())))?;
        self.is_scratch(&mut conn).await?;
        Ok(conn)
    }

    /// A small pool on it, each connection checked as `connect` does.
    pub async fn pool(&self) -> Result<sqlx::PgPool, String> {
        let name = self.name.clone();
        let options = PgConnectOptions::from_str(self.url.expose()).map_err(|e| without_urls(&e.to_string()))?;
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .after_connect(move |conn, _| {
                let name = name.clone();
                Box::pin(async move {
                    let db: String =
                        sqlx::query_scalar("SELECT current_database()::text").fetch_one(&mut *conn).await?;
                    if db != name {
                        return Err(sqlx::Error::Configuration(
                            format!("connected to {db}, not the scratch database {name}").into(),
                        ));
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| format!("cannot connect to {}: {}", self.name, without_urls(&e.to_string())))
    }

    async fn is_scratch(&self, conn: &mut sqlx::PgConnection) -> Result<(), String> {
        let db: String = sqlx::query_scalar("SELECT current_database()::text")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
        if db != self.name {
            return Err(format!("connected to {db}, not the scratch database {}: refused", self.name));
        }
        Ok(())
    }

    /// The environment of a command run against it: its URL, and libpq's variables naming it.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.url.expose().to_string()),
            ("PGHOST", self.admin.get_host().to_string()),
            ("PGPORT", self.admin.get_port().to_string()),
            ("PGUSER", self.admin.get_username().to_string()),
            ("PGDATABASE", self.name.clone()),
        ]
    }

    /// Creates it empty (a leftover of an interrupted rehearsal of the same id goes first).
    pub async fn create(&self) -> Result<(), String> {
        let mut admin = self.admin().await?;
        for sql in
            [format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name), format!("CREATE DATABASE {}", self.name)]
        {
            sqlx::query(&sql).execute(&mut admin).await.map_err(|e| format!("{sql}: {e}"))?;
        }
        Ok(())
    }

    /// Drops it, whoever is still connected.
    pub async fn drop_now(&self) -> Result<(), String> {
        drop_database(&self.admin, &self.name).await
    }
}

/// Drops `name` on the rehearsal server (an interrupted rehearsal's leftover, by its name).
pub async fn drop_database(admin: &PgConnectOptions, name: &str) -> Result<(), String> {
    let rest = name.strip_prefix("rollout_rehearsal_").unwrap_or_default();
    if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_hexdigit() || c == '_') {
        return Err(format!("{name} is no rehearsal's database: not dropped"));
    }
    let mut conn = sqlx::PgConnection::connect_with(admin)
        .await
        .map_err(|e| format!("cannot connect to the rehearsal server: {}", without_urls(&e.to_string())))?;
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::query(&sql).execute(&mut conn).await.map_err(|e| format!("{sql}: {e}"))?;
    Ok(())
}

/// The rehearsal server's connection options.
pub fn admin_options(admin_url: &Secret) -> Result<PgConnectOptions, String> {
    PgConnectOptions::from_str(admin_url.expose()).map_err(|_| "REHEARSAL_DATABASE_URL is not a PostgreSQL URL".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_database_is_the_rehearsals_own_and_never_the_live_diary() {
        let admin = Secret::new("postgres://rh:pw@db.internal:5432/postgres?sslmode=prefer");
        let diary = Secret::new("postgres://app:pw@DB.internal/diary");
        let s = for_rehearsal(&admin, Some(&diary), "0a1b2c3d", 7).unwrap();
        assert_eq!(s.name, "rollout_rehearsal_0a1b2c3d_7");
        assert_eq!(s.url.expose(), "postgres://rh:pw@db.internal:5432/rollout_rehearsal_0a1b2c3d_7?sslmode=prefer");
        // The rehearsal URL names the live diary's database: refused (the host is case-blind, the
        // port defaults to 5432).
        let live = Secret::new("postgres://rh:pw@db.internal/diary");
        assert!(for_rehearsal(&live, Some(&diary), "0a1b2c3d", 7).unwrap_err().contains("live diary"));
        // The same database name on another server is another database.
        let other = Secret::new("postgres://rh:pw@scratch.internal/diary");
        assert!(for_rehearsal(&other, Some(&diary), "0a1b2c3d", 7).is_ok());
        // A live diary that happens to carry a rehearsal's name is never created over.
        let odd = Secret::new("postgres://app:pw@db.internal/rollout_rehearsal_0a1b2c3d_7");
        assert!(for_rehearsal(&admin, Some(&odd), "0a1b2c3d", 7).is_err());
        assert!(for_rehearsal(&Secret::new("mysql://x/y"), None, "0a1b2c3d", 1).is_err());
        // Parameters that would send a connection elsewhere are refused; others are kept, and
        // the password stays as written (so that it stays masked).
        for elsewhere in
            ["?dbname=diary", "?host=diary-db", "?sslmode=require&port=6432", "?options=-c%20search_path%3Dx"]
        {
            let url = Secret::new(format!("postgres://rh:pw@db.internal/postgres{elsewhere}"));
            assert!(
                for_rehearsal(&url, Some(&diary), "0a1b2c3d", 7).unwrap_err().contains("may not carry"),
                "{elsewhere}"
            );
        }
        let odd_password = Secret::new("postgres://rh:Xy%5Ez^|@db.internal/postgres");
        let s = for_rehearsal(&odd_password, None, "0a1b2c3d", 7).unwrap();
        assert_eq!(s.url.expose(), "postgres://rh:Xy%5Ez^|@db.internal/rollout_rehearsal_0a1b2c3d_7");
        assert!(
            for_rehearsal(&Secret::new("postgres:///postgres"), None, "t", 1).is_err(),
            "no host: a socket of this machine"
        );
    }
}
