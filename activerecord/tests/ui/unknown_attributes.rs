use activerecord::ActiveRecord;

#[derive(ActiveRecord)]
#[activerecord(tabel = "accounts", database = "bank")]
struct Account {
    id: Option<i64>,
    #[activerecord(colum = "name")]
    owner: String,
    #[activerecord(table = "balances")]
    balance: i64,
}

fn main() {}
