use activerecord::ActiveRecord;

#[derive(ActiveRecord)]
enum Account {
    Open { id: i64 },
}

fn main() {}
