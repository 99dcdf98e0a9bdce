use activerecord::ActiveRecord;

#[derive(ActiveRecord)]
struct TwoKeys {
    #[activerecord(primary_key)]
    a: i64,
    #[activerecord(primary_key)]
    b: i64,
}

#[derive(ActiveRecord)]
struct SkippedKey {
    #[activerecord(primary_key, skip)]
    id: i64,
}

#[derive(ActiveRecord)]
struct SameColumn {
    id: Option<i64>,
    name: String,
    #[activerecord(column = "name")]
    nickname: String,
}

fn main() {}
