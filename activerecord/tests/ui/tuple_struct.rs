use activerecord::ActiveRecord;

#[derive(ActiveRecord)]
struct Account(i64, String);

fn main() {}
