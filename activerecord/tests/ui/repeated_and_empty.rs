use activerecord::ActiveRecord;

#[derive(ActiveRecord)]
#[activerecord(table = "a", table = "b")]
struct Account {
    id: Option<i64>,
    #[activerecord(column = "")]
    owner: String,
}

fn main() {}
