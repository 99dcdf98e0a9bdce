//! Create, read, update, delete: every supported type round-trips, keys come back, errors are typed.

use crate::common::{Account, Ddl, Sample, connect, full_sample, sample_with_nulls, test_matrix};
use activerecord::{ActiveRecord, Backend, ConstraintKind, Error, Model, Result, col};

test_matrix!([sqlite, postgres, mariadb] =>
    every_type_round_trips,
    nulls_round_trip,
    update_writes_every_column,
    generated_keys_come_back_in_order,
    hostile_strings_are_only_data,
    missing_rows_are_not_found,
    constraint_violations_are_typed,
    missing_tables_are_schema_errors,
    application_keys_upsert,
    reload_and_delete,
    save_after_delete_inserts_again,
    natural_keys_are_kept_through_delete,
);

async fn every_type_round_trips(backend: Backend) -> Result<()> {
    let db = connect(backend, "types").await;
    db.execute(&Ddl(backend).samples()).await?;
    let mut sample = full_sample();
    sample.not_stored = vec!["kept only in memory".into()];
    sample.save(&db).await?;
    let id = sample.id.expect("the generated key is stored back");

    let loaded = Sample::find(&db, id).await?;
    assert!(
        loaded.not_stored.is_empty(),
        "a skipped field is filled with its default"
    );
    sample.not_stored.clear();
    assert_eq!(loaded, sample);
    Ok(())
}

async fn nulls_round_trip(backend: Backend) -> Result<()> {
    let db = connect(backend, "nulls").await;
    db.execute(&Ddl(backend).samples()).await?;
    let sample = Sample::create(&db, sample_with_nulls()).await?;
    let loaded = Sample::find(&db, sample.id.unwrap()).await?;
    assert_eq!(loaded, sample);
    assert_eq!(Sample::query().filter(col("maybe_text").is_null()).count(&db).await?, 1);
    Ok(())
}

async fn update_writes_every_column(backend: Backend) -> Result<()> {
    let db = connect(backend, "updates").await;
    db.execute(&Ddl(backend).samples()).await?;
    let mut sample = Sample::create(&db, full_sample()).await?;
    let nulls = sample_with_nulls();
    sample = Sample { id: sample.id, ..nulls };
    sample.text = "changed".into();
    sample.big = 42;
    sample.save(&db).await?;
    assert_eq!(Sample::find(&db, sample.id.unwrap()).await?, sample);
    assert_eq!(Sample::count(&db).await?, 1, "saving a loaded record updates it");
    Ok(())
}

async fn generated_keys_come_back_in_order(backend: Backend) -> Result<()> {
    let db = connect(backend, "keys").await;
    testkit::bank::create_tables(&db).await?;
    let mut ids = Vec::new();
    for n in 0..5 {
        let account = Account::create(
            &db,
            Account {
                id: None,
                owner: format!("owner {n}"),
                balance: n,
            },
        )
        .await?;
        ids.push(account.id.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "keys increase: {ids:?}");
    let all = Account::all(&db).await?;
    assert_eq!(all.iter().map(|a| a.id.unwrap()).collect::<Vec<_>>(), ids);
    Ok(())
}

async fn hostile_strings_are_only_data(backend: Backend) -> Result<()> {
    let db = connect(backend, "hostile").await;
    testkit::bank::create_tables(&db).await?;
    let hostile = "'; DROP TABLE accounts; --";
    let saved = Account::create(
        &db,
        Account {
            id: None,
            owner: hostile.into(),
            balance: 1,
        },
    )
    .await?;
    let loaded = Account::find(&db, saved.id.unwrap()).await?;
    assert_eq!(loaded.owner, hostile);
    let found = Account::find_by(&db, col("owner").eq(hostile)).await?;
    assert_eq!(found, Some(saved));
    let quote_heavy = r#"a"b`c\d'e"#;
    Account::create(
        &db,
        Account {
            id: None,
            owner: quote_heavy.into(),
            balance: 2,
        },
    )
    .await?;
    assert_eq!(
        Account::find_by(&db, col("owner").eq(quote_heavy))
            .await?
            .unwrap()
            .balance,
        2
    );
    assert_eq!(Account::count(&db).await?, 2, "the table is still there");
    Ok(())
}

async fn missing_rows_are_not_found(backend: Backend) -> Result<()> {
    let db = connect(backend, "missing").await;
    testkit::bank::create_tables(&db).await?;
    let err = Account::find(&db, 404).await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound { table: "accounts", key_column: "id", ref key } if key == "404"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "no row in `accounts` with id = 404");

    let mut ghost = Account {
        id: Some(404),
        owner: "ghost".into(),
        balance: 0,
    };
    assert!(matches!(ghost.update(&db).await, Err(Error::NotFound { .. })));
    assert!(matches!(ghost.delete(&db).await, Err(Error::NotFound { .. })));
    assert_eq!(ghost.id, Some(404), "a failed delete keeps the key");
    assert_eq!(Account::find_by(&db, col("owner").eq("ghost")).await?, None);
    Ok(())
}

async fn constraint_violations_are_typed(backend: Backend) -> Result<()> {
    let db = connect(backend, "constraints").await;
    testkit::bank::create_tables(&db).await?;
    Account::create(
        &db,
        Account {
            id: None,
            owner: "alice".into(),
            balance: 1,
        },
    )
    .await?;
    let err = Account::create(
        &db,
        Account {
            id: None,
            owner: "alice".into(),
            balance: 2,
        },
    )
    .await
    .unwrap_err();
    match &err {
        Error::ConstraintViolation {
            kind: ConstraintKind::Unique,
            connection,
            ..
        } => {
            assert_eq!(connection, db.name());
        }
        other => panic!("expected a unique violation, got {other:?}"),
    }
    assert!(
        std::error::Error::source(&err).is_some(),
        "the database's error is kept"
    );
    assert_eq!(Account::count(&db).await?, 1, "the failed insert wrote nothing");
    Ok(())
}

async fn missing_tables_are_schema_errors(backend: Backend) -> Result<()> {
    let db = connect(backend, "schema").await;
    let err = Account::find(&db, 1).await.unwrap_err();
    assert!(matches!(err, Error::Schema { .. }), "{err:?}");
    assert!(err.to_string().contains(db.name()), "{err}");
    Ok(())
}

/// A model whose key the application chooses.
#[derive(ActiveRecord, Debug, Clone, PartialEq)]
#[activerecord(table = "settings")]
struct Setting {
    #[activerecord(primary_key)]
    key: String,
    value: String,
}

async fn application_keys_upsert(backend: Backend) -> Result<()> {
    let db = connect(backend, "upserts").await;
    // `key` is a reserved word in MySQL: the ORM must quote it.
    let ddl = Ddl(backend);
    db.execute(&format!(
        "CREATE TABLE settings ({} VARCHAR(50) PRIMARY KEY, value TEXT NOT NULL)",
        ddl.quote("key")
    ))
    .await?;
    let mut theme = Setting {
        key: "theme".into(),
        value: "dark".into(),
    };
    theme.save(&db).await?;
    theme.value = "light".into();
    theme.save(&db).await?;
    assert_eq!(Setting::find(&db, "theme".to_owned()).await?.value, "light");
    assert_eq!(Setting::count(&db).await?, 1);
    let err = Setting::create(&db, theme.clone()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::ConstraintViolation {
                kind: ConstraintKind::Unique,
                ..
            }
        ),
        "{err:?}"
    );
    Ok(())
}

async fn reload_and_delete(backend: Backend) -> Result<()> {
    let db = connect(backend, "reload").await;
    testkit::bank::create_tables(&db).await?;
    let mut mine = Account::create(
        &db,
        Account {
            id: None,
            owner: "me".into(),
            balance: 10,
        },
    )
    .await?;
    let mut other_copy = Account::find(&db, mine.id.unwrap()).await?;
    other_copy.balance = 99;
    other_copy.save(&db).await?;
    mine.reload(&db).await?;
    assert_eq!(mine.balance, 99);
    mine.delete(&db).await?;
    assert_eq!(Account::count(&db).await?, 0);
    assert!(matches!(mine.reload(&db).await, Err(Error::NotSaved { .. })));
    let mut unsaved = Account {
        id: None,
        owner: "new".into(),
        balance: 0,
    };
    assert!(matches!(
        unsaved.delete(&db).await,
        Err(Error::NotSaved {
            operation: "delete",
            ..
        })
    ));
    Ok(())
}

async fn save_after_delete_inserts_again(backend: Backend) -> Result<()> {
    let db = connect(backend, "resave").await;
    testkit::bank::create_tables(&db).await?;
    let mut record = Account::create(
        &db,
        Account {
            id: None,
            owner: "phoenix".into(),
            balance: 7,
        },
    )
    .await?;
    record.delete(&db).await?;
    assert_eq!(record.id, None, "delete forgets the generated key");
    record.save(&db).await?;
    // SQLite may hand out the same key again once the row with the highest key is gone.
    let second_id = record.id.expect("inserted again");
    assert_eq!(Account::find(&db, second_id).await?.owner, "phoenix");
    assert_eq!(Account::count(&db).await?, 1);

    // Someone else deletes the row: this copy still has its key, and save does not resurrect it.
    let mut stale = Account::find(&db, second_id).await?;
    Account::find(&db, second_id).await?.delete(&db).await?;
    stale.balance = 8;
    assert!(matches!(stale.save(&db).await, Err(Error::NotFound { .. })));
    assert_eq!(Account::count(&db).await?, 0);
    Ok(())
}

/// A model whose key the application assigns keeps it through `delete`; `save` then puts the row
/// back under that key.
async fn natural_keys_are_kept_through_delete(backend: Backend) -> Result<()> {
    let db = connect(backend, "natural_resave").await;
    let d = Ddl(backend);
    db.execute(&format!(
        "CREATE TABLE {} ({} VARCHAR(20) PRIMARY KEY, {} VARCHAR(50) NOT NULL)",
        d.quote("currencies"),
        d.quote("code"),
        d.quote("name")
    ))
    .await?;
    let mut euro = Currency {
        code: "EUR".into(),
        name: "Euro".into(),
    };
    euro.save(&db).await?;
    euro.delete(&db).await?;
    assert_eq!(euro.code, "EUR");
    assert_eq!(Currency::count(&db).await?, 0);
    euro.save(&db).await?;
    assert_eq!(Currency::find(&db, "EUR".to_owned()).await?.name, "Euro");
    Ok(())
}

#[derive(ActiveRecord, Debug, Clone, PartialEq)]
#[activerecord(table = "currencies")]
struct Currency {
    #[activerecord(primary_key)]
    code: String,
    name: String,
}
