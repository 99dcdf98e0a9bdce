//! Queries with every operator, ordering, paging, counting, and typed errors for bad columns.

use crate::common::{Account, connect, test_matrix};
use activerecord::{Backend, ConnectionManager, Database, DatabaseConfig, Error, Model, Order, Result, col};

test_matrix!([sqlite, postgres, mariadb] =>
    every_operator_selects_the_right_rows,
    ordering_and_paging,
    counts_exists_and_deletes,
    unknown_columns_are_errors,
    one_query_with_parameters_of_varying_types,
    bulk_deletes_need_a_filter,
);

async fn bulk_deletes_need_a_filter(backend: Backend) -> Result<()> {
    let db = bank(backend, "bulk_deletes").await?;
    let err = Account::query().delete_all(&db).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unfiltered {
                table: "accounts",
                operation: "delete"
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(".unfiltered()"), "{err}");
    assert_eq!(Account::count(&db).await?, 5, "nothing was deleted");
    // Ordering or paging is not a filter.
    let err = Account::query()
        .order_by("id", Order::Asc)
        .limit(1)
        .delete_all(&db)
        .await;
    assert!(matches!(err, Err(Error::Unfiltered { .. })));
    assert_eq!(Account::query().unfiltered().delete_all(&db).await?, 5);
    assert_eq!(Account::count(&db).await?, 0);
    Ok(())
}

/// Five accounts: ann 10, bob 20, cy 30, dee 40, ed 50.
async fn bank(backend: Backend, label: &str) -> Result<Database> {
    let db = connect(backend, label).await;
    testkit::bank::create_tables(&db).await?;
    for (owner, balance) in [("ann", 10), ("bob", 20), ("cy", 30), ("dee", 40), ("ed", 50)] {
        Account::create(
            &db,
            Account {
                id: None,
                owner: owner.into(),
                balance,
            },
        )
        .await?;
    }
    Ok(db)
}

async fn owners(db: &Database, query: activerecord::Query<Account>) -> Result<Vec<String>> {
    let accounts = query.order_by("owner", Order::Asc).all(db).await?;
    Ok(accounts.into_iter().map(|a| a.owner).collect())
}

async fn every_operator_selects_the_right_rows(backend: Backend) -> Result<()> {
    let db = bank(backend, "operators").await?;
    let q = Account::query;
    assert_eq!(owners(&db, q().filter(col("balance").eq(30))).await?, ["cy"]);
    assert_eq!(
        owners(&db, q().filter(col("balance").ne(30))).await?,
        ["ann", "bob", "dee", "ed"]
    );
    assert_eq!(owners(&db, q().filter(col("balance").lt(30))).await?, ["ann", "bob"]);
    assert_eq!(
        owners(&db, q().filter(col("balance").le(30))).await?,
        ["ann", "bob", "cy"]
    );
    assert_eq!(owners(&db, q().filter(col("balance").gt(30))).await?, ["dee", "ed"]);
    assert_eq!(
        owners(&db, q().filter(col("balance").ge(30))).await?,
        ["cy", "dee", "ed"]
    );
    assert_eq!(
        owners(&db, q().filter(col("owner").is_in(["bob", "ed", "zed"]))).await?,
        ["bob", "ed"]
    );
    assert_eq!(
        owners(&db, q().filter(col("owner").not_in(["bob", "ed"]))).await?,
        ["ann", "cy", "dee"]
    );
    assert!(
        owners(&db, q().filter(col("owner").is_in(Vec::<String>::new())))
            .await?
            .is_empty()
    );
    assert_eq!(
        owners(&db, q().filter(col("owner").not_in(Vec::<String>::new())))
            .await?
            .len(),
        5
    );
    assert_eq!(owners(&db, q().filter(col("owner").like("%d%"))).await?, ["dee", "ed"]);
    assert_eq!(
        owners(&db, q().filter(col("owner").is_null())).await?,
        Vec::<String>::new()
    );
    assert_eq!(owners(&db, q().filter(col("owner").is_not_null())).await?.len(), 5);
    // Conditions combine with AND.
    let between = q().filter(col("balance").gt(10)).filter(col("balance").lt(50));
    assert_eq!(owners(&db, between).await?, ["bob", "cy", "dee"]);
    // A value that is an operator to SQL is only data here.
    assert!(
        owners(&db, q().filter(col("owner").eq("x' OR '1'='1")))
            .await?
            .is_empty()
    );
    Ok(())
}

async fn ordering_and_paging(backend: Backend) -> Result<()> {
    let db = bank(backend, "paging").await?;
    let page = Account::query()
        .order_by("balance", Order::Desc)
        .limit(2)
        .offset(1)
        .all(&db)
        .await?;
    assert_eq!(page.iter().map(|a| a.balance).collect::<Vec<_>>(), [40, 30]);
    let rest = Account::query()
        .order_by("balance", Order::Asc)
        .offset(3)
        .all(&db)
        .await?;
    assert_eq!(rest.iter().map(|a| a.balance).collect::<Vec<_>>(), [40, 50]);
    let richest = Account::query()
        .order_by("balance", Order::Desc)
        .first(&db)
        .await?
        .unwrap();
    assert_eq!(richest.owner, "ed");
    let first_by_key = Account::query().first(&db).await?.unwrap();
    assert_eq!(first_by_key.owner, "ann");
    Ok(())
}

async fn counts_exists_and_deletes(backend: Backend) -> Result<()> {
    let db = bank(backend, "counts").await?;
    assert_eq!(Account::count(&db).await?, 5);
    assert_eq!(Account::query().filter(col("balance").ge(20)).count(&db).await?, 4);
    assert_eq!(
        Account::query()
            .filter(col("balance").ge(20))
            .limit(2)
            .count(&db)
            .await?,
        2
    );
    assert!(Account::query().filter(col("owner").eq("cy")).exists(&db).await?);
    assert!(!Account::query().filter(col("owner").eq("zed")).exists(&db).await?);
    let deleted = Account::query().filter(col("balance").lt(30)).delete_all(&db).await?;
    assert_eq!(deleted, 2);
    assert_eq!(owners(&db, Account::query()).await?, ["cy", "dee", "ed"]);
    Ok(())
}

async fn unknown_columns_are_errors(backend: Backend) -> Result<()> {
    let db = bank(backend, "unknown_columns").await?;
    let err = Account::query()
        .filter(col("balanse").gt(1))
        .all(&db)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownColumn { column, .. } if column == "balanse"),
        "{err:?}"
    );
    assert!(err.to_string().contains("id, owner, balance"), "{err}");
    let err = Account::query()
        .order_by("nope; DROP TABLE accounts", Order::Asc)
        .all(&db)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownColumn { .. }), "{err:?}");
    assert_eq!(Account::count(&db).await?, 5);
    Ok(())
}

/// The same condition with an `i32`, then an `i64`, then an `i32` again, on a single connection:
/// the statement prepared for one parameter type must not be reused for another.
async fn one_query_with_parameters_of_varying_types(backend: Backend) -> Result<()> {
    let seeded = bank(backend, "varying_types").await?;
    let url = seeded.url().expose().to_owned();
    let name = format!("varying_types_one_{backend:?}").to_lowercase();
    let db = ConnectionManager::configure_with(&name, DatabaseConfig::new(url).max_connections(1)).await?;
    for round in 0..3 {
        let narrow = Account::query().filter(col("balance").ge(30_i32)).count(&db).await?;
        let wide = Account::query().filter(col("balance").ge(30_i64)).count(&db).await?;
        let listed = Account::query()
            .filter(col("balance").is_in([10_i16, 20]))
            .count(&db)
            .await?;
        assert_eq!((narrow, wide, listed), (3, 3, 2), "round {round}");
    }
    Ok(())
}
