use activerecord::ActiveRecord;

#[derive(ActiveRecord)]
struct Account<T> {
    id: Option<i64>,
    extra: T,
}

fn main() {}
