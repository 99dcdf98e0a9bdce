//! The crate's own tables through migrations: idempotent, safe to run from two pools at once,
//! recorded in our own migrations table, kind to tables made by earlier versions and to a user's
//! own sqlx migrations, and refused inside a transaction scope.

use crate::common::{connect, test_matrix};
use activerecord::migrate::{self, MIGRATIONS_TABLE};
use activerecord::{Backend, ConnectionManager, Database, Error, Result, fetch_column};
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

test_matrix!([sqlite, postgres, mariadb] =>
    migrations_run_twice_are_a_no_op,
    two_pools_migrating_at_once_agree,
    a_decision_log_made_before_migrations_is_kept,
    a_users_sqlx_migrations_are_untouched,
    migrating_inside_a_scope_is_refused,
);

/// The versions recorded in our migrations table, with their checksums.
async fn applied(db: &Database) -> Vec<(i64, Vec<u8>)> {
    let versions: Vec<i64> = fetch_column(db, "SELECT version FROM activerecord_migrations ORDER BY version")
        .await
        .unwrap();
    let checksums: Vec<Vec<u8>> = fetch_column(db, "SELECT checksum FROM activerecord_migrations ORDER BY version")
        .await
        .unwrap();
    versions.into_iter().zip(checksums).collect()
}

fn versions(backend: Backend) -> Vec<i64> {
    migrate::migrations(backend).into_iter().map(|(v, _)| v).collect()
}

async fn migrations_run_twice_are_a_no_op(backend: Backend) -> Result<()> {
    let db = connect(backend, "migrate_twice").await;
    migrate::run(&db).await?;
    let first = applied(&db).await;
    assert_eq!(first.iter().map(|(v, _)| *v).collect::<Vec<_>>(), versions(backend));
    let installed: Vec<i64> = fetch_column(&db, "SELECT COUNT(*) FROM activerecord_two_phase_log").await?;
    assert_eq!(installed, [0], "the decision log exists and is empty");

    migrate::run(&db).await?;
    assert_eq!(applied(&db).await, first, "the second run changed nothing");
    Ok(())
}

async fn two_pools_migrating_at_once_agree(backend: Backend) -> Result<()> {
    let one = connect(backend, "migrate_race").await;
    let two = ConnectionManager::configure(&format!("{}_two", one.name()), one.url().expose()).await?;
    let (a, b) = tokio::join!(migrate::run(&one), migrate::run(&two));
    a?;
    b?;
    assert_eq!(
        applied(&one).await.into_iter().map(|(v, _)| v).collect::<Vec<_>>(),
        versions(backend),
        "each migration is recorded once"
    );
    ConnectionManager::close(two.name()).await?;
    Ok(())
}

async fn a_decision_log_made_before_migrations_is_kept(backend: Backend) -> Result<()> {
    let db = connect(backend, "migrate_existing_log").await;
    // The statement `Coordinator::install` ran before the log moved to migrations.
    let branches_type = match backend {
        Backend::Postgres => "JSONB",
        Backend::Sqlite | Backend::MySql => "TEXT",
    };
    db.execute(&format!(
        "CREATE TABLE IF NOT EXISTS activerecord_two_phase_log (gtrid VARCHAR(64) PRIMARY KEY, \
         coordinator VARCHAR(64) NOT NULL, branches {branches_type} NOT NULL, decided_at BIGINT NOT NULL)"
    ))
    .await?;
    db.execute("INSERT INTO activerecord_two_phase_log VALUES ('ar-old-1-00000000', 'old', '[]', 1)")
        .await?;

    migrate::run(&db).await?;
    let kept: Vec<String> = fetch_column(&db, "SELECT gtrid FROM activerecord_two_phase_log").await?;
    assert_eq!(
        kept,
        ["ar-old-1-00000000"],
        "the decision written before migrations is still there"
    );
    assert_eq!(applied(&db).await.len(), versions(backend).len());
    Ok(())
}

/// A user's own sqlx migrator, recording in sqlx's default table.
fn users_migrator() -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        "users own table".into(),
        MigrationType::Simple,
        "CREATE TABLE users_own_table (id INTEGER)".into_sql_str(),
        false,
    )])
}

async fn run_users_migrator(db: &Database) {
    let migrator = users_migrator();
    let outcome = match db.backend() {
        Backend::Sqlite => migrator.run(db.sqlite_pool().unwrap()).await,
        Backend::Postgres => migrator.run(db.postgres_pool().unwrap()).await,
        Backend::MySql => migrator.run(db.mysql_pool().unwrap()).await,
    };
    outcome.unwrap_or_else(|e| panic!("the user's own migrations on {}: {e}", db.name()));
}

async fn a_users_sqlx_migrations_are_untouched(backend: Backend) -> Result<()> {
    assert_eq!(MIGRATIONS_TABLE, "activerecord_migrations");
    let db = connect(backend, "migrate_users_own").await;
    run_users_migrator(&db).await;
    migrate::run(&db).await?;
    // The user's migrator still finds exactly its own history (sqlx refuses to run when its table
    // names a version it does not know).
    run_users_migrator(&db).await;
    let theirs: Vec<String> = fetch_column(&db, "SELECT description FROM _sqlx_migrations ORDER BY version").await?;
    assert_eq!(theirs, ["users own table"]);
    assert_eq!(
        applied(&db).await.into_iter().map(|(v, _)| v).collect::<Vec<_>>(),
        versions(backend)
    );
    Ok(())
}

async fn migrating_inside_a_scope_is_refused(backend: Backend) -> Result<()> {
    let db = connect(backend, "migrate_in_scope").await;
    let refused = ConnectionManager::using(db.name())
        .transaction(async |_tx| migrate::run(&db).await)
        .await;
    match refused {
        Err(Error::MigrateInScope { connection }) => assert_eq!(connection, db.name()),
        other => panic!("expected MigrateInScope, got {other:?}"),
    }
    let nothing: Result<Vec<i64>> = fetch_column(&db, "SELECT COUNT(*) FROM activerecord_migrations").await;
    assert!(
        matches!(nothing, Err(Error::Schema { .. })),
        "nothing was created: {nothing:?}"
    );
    // Outside the scope it runs.
    migrate::run(&db).await?;
    Ok(())
}
