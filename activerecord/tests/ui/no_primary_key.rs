use activerecord::ActiveRecord;

#[derive(ActiveRecord)]
struct Account {
    number: i64,
    owner: String,
}

fn main() {}
